"""Exports: volume series as MRC + a ChimeraX script, and particle subsets for other programs
(cryoDRGN index pickle, filtered RELION .star, cryoSPARC .cs + .csg, filtered .mrcs), and the
backprojection of a selection into half maps with their FSC."""
from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.io.atomic import atomic_open

DEFAULT_COLOR = "#8fb3de"


def make_outdir(path: str | os.PathLike) -> Path:
    """Create an output folder, or say clearly why it cannot be (e.g. a read-only run)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CryoscapeError(f"{path}: cannot create the output folder ({e.strerror}); "
                             "choose another with -o") from None
    if not os.access(path, os.W_OK):
        raise CryoscapeError(f"{path}: the output folder is not writable; choose another "
                             "with -o")
    return path


def suggest_level(volumes) -> float:
    """A threshold for viewing a series at one level: the median over the maps of
    mean + 2.5 standard deviations (the molecule stands well above the solvent)."""
    levels = [float(v.mean() + 2.5 * v.std()) for v in volumes]
    return float(np.median(levels))


def write_cxc(path: str | os.PathLike, files: Sequence[str | os.PathLike], level: float,
              color: str = DEFAULT_COLOR, apix: float | None = None, play: bool = True,
              frame_rate: float = 5.0) -> Path:
    """A ChimeraX command script that opens `files` (relative to the script; ChimeraX runs a
    script in its own folder) as one volume series, sets surface level and colour, and plays
    it back and forth. A single map is opened plainly."""
    path = Path(path)
    names = [os.path.relpath(Path(f).resolve(), path.parent.resolve()) for f in files]
    if not names:
        raise CryoscapeError("a ChimeraX script needs at least one map")
    quoted = " ".join(f'"{n}"' if " " in n else n for n in names)
    lines = [f"# ChimeraX script written by cryoscape: {len(names)} map(s)"
             + (f", voxel size {apix:g} A" if apix else ""),
             "# run with: chimerax " + path.name + "   (or 'open " + path.name + "' in ChimeraX;"
             " model #1 assumes a fresh session)"]
    series = len(names) > 1
    lines.append(f"open {quoted}" + (" vseries true" if series else ""))
    lines.append(f"volume #1 style surface level {level:.6g} color {color}")
    lines.append("view")
    if series and play:
        lines.append(f"vseries play #1 loop true direction oscillate maxFrameRate {frame_rate:g}")
    with atomic_open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


@dataclass
class VolumeSeries:
    """Maps written by `write_volume_series`: their paths, the .cxc script and its level."""

    paths: list[Path]
    cxc: Path | None
    level: float


def write_volume_series(volumes, outdir: str | os.PathLike, apix: float, prefix: str = "vol_",
                        cxc: str | None = "chimerax.cxc", level: float | None = None,
                        color: str = DEFAULT_COLOR, progress=None) -> VolumeSeries:
    """Write maps [M, D, D, D] as `prefix000.mrc`... (voxel size apix) plus a ChimeraX script.

    `volumes` may be an array or an iterable of [D, D, D] arrays (written as they come);
    `progress` (optional) wraps the iterable, e.g. tqdm.
    """
    from cryoscape.core.io.mrc import write_mrc

    outdir = make_outdir(outdir)
    paths, levels = [], []
    it = progress(volumes) if progress else volumes
    for i, vol in enumerate(it):
        vol = np.asarray(vol, dtype=np.float32)
        if vol.ndim != 3:
            raise CryoscapeError(f"map {i} is not 3D: shape {vol.shape}")
        p = outdir / f"{prefix}{i:03d}.mrc"
        write_mrc(p, vol, apix=apix)
        paths.append(p)
        levels.append(suggest_level([vol]))
    if not paths:
        raise CryoscapeError("no maps to write")
    lev = float(np.median(levels)) if level is None else float(level)
    script = write_cxc(outdir / cxc, paths, lev, color=color, apix=apix) if cxc else None
    return VolumeSeries(paths=paths, cxc=script, level=lev)


# ---------------------------------------------------------------- particle subsets

def export_index(path: str | os.PathLike, ind) -> Path:
    """cryoDRGN index pickle (int array) for `--ind`."""
    from cryoscape.core.io.cryodrgn import save_index

    save_index(path, np.asarray(ind, dtype=np.int64))
    return Path(path)


def _check_ind(ind, n: int, source) -> np.ndarray:
    ind = np.asarray(ind, dtype=np.int64).ravel()
    if len(ind) and (ind.min() < 0 or ind.max() >= n):
        raise InputFileError(source, f"selection indexes particles beyond its {n} rows "
                                     "(was the run trained on a different particle file?)")
    return ind


def export_star(src, ind, out: str | os.PathLike, labels=None,
                image_stack: str | os.PathLike | None = None) -> Path:
    """The source .star filtered to `ind` (every column and the optics table kept).

    `labels` [len(ind)] (e.g. the selected particles' k-means labels 0..k-1) are written as
    rlnClassNumber (1-based). With `image_stack` (a .mrcs holding exactly the selected images,
    in order, see `export_mrcs`), rlnImageName is re-pointed at it: `000001@stack.mrcs`...
    """
    from cryoscape.core.io.star import read_star, subset_star, write_star

    star = read_star(src)
    ind = _check_ind(ind, len(star.particles), src)
    sub = subset_star(star, ind)
    if labels is not None:
        labels = np.asarray(labels)
        if len(labels) != len(ind):
            raise CryoscapeError(f"{len(labels)} labels for {len(ind)} selected particles")
        sub.particles["rlnClassNumber"] = labels.astype(np.int64) + 1
    if image_stack is not None:
        rel = os.path.relpath(Path(image_stack).resolve(), Path(out).resolve().parent)
        sub.particles["rlnImageName"] = [f"{i + 1:06d}@{rel}" for i in range(len(ind))]
    write_star(out, sub)
    return Path(out)


CSG_VERSION = "v4.4.1"


def _prefixes(arr) -> list[str]:
    out = []
    for name in arr.dtype.names:
        p = name.split("/")[0]
        if "/" in name and p not in out:
            out.append(p)
    return out


def write_csg(path: str | os.PathLike, cs_path: str | os.PathLike, arr,
              name: str = "particles", passthrough: tuple | None = None) -> Path:
    """cryoSPARC group file (.csg, YAML) listing a particle .cs: one result per field prefix
    (blob, ctf, alignments3D, ...), each pointing at its .cs file ('>' = beside the .csg).
    `passthrough` = (path, array): a second .cs providing the prefixes the first lacks."""
    import yaml

    def rel(p):
        return ">" + os.path.relpath(Path(p).resolve(), Path(path).resolve().parent)

    results = {p: {"metafile": rel(cs_path), "num_items": len(arr),
                   "type": f"particle.{p}"} for p in _prefixes(arr)}
    if passthrough is not None:
        for p in _prefixes(passthrough[1]):
            results.setdefault(p, {"metafile": rel(passthrough[0]),
                                   "num_items": len(passthrough[1]),
                                   "type": f"particle.{p}"})
    doc = {
        "created": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f"),
        "group": {"description": "Particle subset exported by cryoscape", "name": name,
                  "title": "Particles (cryoscape subset)", "type": "particle"},
        "results": results,
        "version": CSG_VERSION,
    }
    with atomic_open(path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return Path(path)


def export_cs(src, ind, out: str | os.PathLike, csg: bool = True,
              passthrough: str | os.PathLike | bool | None = None
              ) -> tuple[Path, Path | None]:
    """The source .cs filtered to `ind`, same dtype and fields, plus a .csg beside it so that
    cryoSPARC's Import Result Group can read it.

    A passthrough file (`passthrough`; None: found beside the source; False: none) is
    filtered to the same particles (by uid) as `OUT_passthrough.cs` and listed in the .csg
    for the fields the source lacks (blob, ctf, ... as cryoSPARC splits them).
    """
    from cryoscape.core.io.cs import find_passthrough, read_cs, rows_by_uid, subset_cs, write_cs

    arr = read_cs(src, passthrough=False)
    ind = _check_ind(ind, len(arr), src)
    sub = subset_cs(arr, ind)
    out = Path(out)
    write_cs(out, sub)
    extra = None
    pt = find_passthrough(src) if passthrough is None else (passthrough or None)
    if pt is not None and "uid" in arr.dtype.names:
        parr = read_cs(pt, passthrough=False)
        adds = set(_prefixes(parr)) - set(_prefixes(arr))
        if "uid" in parr.dtype.names and adds:
            rows = rows_by_uid(parr, sub["uid"], pt,
                               "the passthrough file lacks some selected particles")
            pout = out.with_name(out.stem + "_passthrough.cs")
            write_cs(pout, subset_cs(parr, rows))
            extra = (pout, parr[rows])
    g = write_csg(out.with_suffix(".csg"), out, sub, passthrough=extra) if csg else None
    return out, g


def export_mrcs(src, ind, out: str | os.PathLike, datadir=None, chunk: int = 1000,
                progress=None) -> Path:
    """The selected images, in order, as one .mrcs stack (streamed: bounded memory)."""
    from cryoscape.core.io.mrc import new_mrc_stack
    from cryoscape.core.io.stack import open_images

    images = open_images(src, lazy=True, datadir=datadir)
    ind = _check_ind(ind, len(images), src)
    if not len(ind):
        raise CryoscapeError("the selection is empty: no stack to write")
    starts = range(0, len(ind), chunk)
    with new_mrc_stack(out, (len(ind), images.D, images.D), apix=float(images.apix)) as data:
        for s in progress(starts) if progress else starts:
            data[s:s + chunk] = images[ind[s:s + chunk]]
    return Path(out)


SUBSET_FORMATS = (".pkl", ".star", ".cs", ".mrcs")


def export_subset(out: str | os.PathLike, ind, particles: str | os.PathLike | None = None, *,
                  labels=None, datadir=None) -> Path:
    """Particle-file rows `ind` written as `out`, in the format its extension names: .pkl
    (cryoDRGN index pickle), .star or .cs (the `particles` file of that kind, filtered; a .cs
    with its .csg), .mrcs (the selected images of `particles`). `labels`: a .star's
    rlnClassNumber (see `export_star`). Returns `out`."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUBSET_FORMATS:
        raise CryoscapeError(f"{out}: a subset is written as {', '.join(SUBSET_FORMATS)}")
    if suffix == ".pkl":
        return export_index(out, ind)
    src = Path(particles or "")
    if suffix in (".star", ".cs") and src.suffix.lower() != suffix:
        raise CryoscapeError(f"{out.name}: a {suffix} subset is cut from a {suffix} particle "
                             f"file, and {src} is not one: give the {suffix} file the run was "
                             "trained on")
    if suffix == ".star":
        return export_star(src, ind, out, labels=labels)
    if suffix == ".cs":
        return export_cs(src, ind, out)[0]
    return export_mrcs(src, ind, out, datadir=datadir)


# ---------------------------------------------------------------- reconstruct a selection

def reconstruct_selection(particles, ind, outdir: str | os.PathLike, prefix: str = "selection",
                          plot: bool = True):
    """Backproject the selected particles (known poses) into a map and two half maps; write
    them as MRC with their FSC curve (text and PNG). Returns NUM's Reconstruction."""
    from cryoscape.core.backproject import backproject
    from cryoscape.core.io.mrc import write_mrc
    from cryoscape.core.metrics import plot_fsc, save_fsc

    if particles.rotations is None:
        raise CryoscapeError("the particles have no poses; give a pose file to reconstruct")
    ind = _check_ind(ind, len(particles.images), particles.path or "particles")
    if len(ind) < 2:
        raise CryoscapeError("a reconstruction with half maps needs at least 2 particles")
    outdir = make_outdir(outdir)
    rec = backproject(particles, ind=ind, half_maps=True)
    apix = float(rec.apix)
    write_mrc(outdir / f"{prefix}.mrc", rec.volume, apix=apix)
    write_mrc(outdir / f"{prefix}_half1.mrc", rec.half1, apix=apix)
    write_mrc(outdir / f"{prefix}_half2.mrc", rec.half2, apix=apix)
    save_fsc(outdir / f"{prefix}_fsc.txt", *rec.fsc)      # as `cryoscape backproject`
    if plot:
        plot_fsc(outdir / f"{prefix}_fsc.png", rec.fsc[0], {"half-maps": rec.fsc[1]}, apix,
                 title=f"{prefix}: half-map FSC ({len(ind)} particles)")
    return rec
