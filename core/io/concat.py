"""Concatenating files of one kind, in the order given: image stacks, cryoDRGN pickles (poses,
CTF, latents; index pickles are joined as the union of the selections) and RELION .star files
(optics groups merged). Boxes and pixel sizes must agree; everything is checked before the
output is written (atomically).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from cryoscape.core.errors import CryoscapeError, InputFileError, warn

APIX_RTOL = 1e-3  # pixel sizes this close (relative) are the same


def _same_or_raise(values: dict, what: str, unit: str = "") -> None:
    """values {path: value or None}: raise naming the first file whose value differs."""
    known = [(p, v) for p, v in values.items() if v is not None]
    for p, v in known[1:]:
        p0, v0 = known[0]
        if not np.isclose(v, v0, rtol=APIX_RTOL, atol=0):
            raise InputFileError(p, f"{what} {v:g}{unit} differs from {p0}'s {v0:g}{unit}: "
                                    "concatenate files of one box and pixel size")


def concat_stacks(paths, out: str | os.PathLike, progress: bool = True) -> tuple[int, int, float]:
    """Write the images of the stacks `paths` one after another to `out`. -> (N, D, apix)."""
    from cryoscape.core.io.downsample import auto_chunk
    from cryoscape.core.io.mrc import new_mrc_stack
    from cryoscape.core.io.stack import open_images
    from tqdm import tqdm

    sources = [open_images(p, lazy=True) for p in paths]
    _same_or_raise({p: s.D for p, s in zip(paths, sources)}, "box size", " px")
    _same_or_raise({p: s.apix for p, s in zip(paths, sources)}, "pixel size", " A")
    n, D, apix = sum(len(s) for s in sources), sources[0].D, sources[0].apix
    with (new_mrc_stack(out, (n, D, D), apix=apix) as data,
          tqdm(total=n, unit="img", desc="concat", disable=not progress) as bar):
        start = 0
        for s in sources:
            for i, images in s.chunks(auto_chunk(D)):
                data[start + i:start + i + len(images)] = images
                bar.update(len(images))
            start += len(s)
    return n, D, apix


def pickle_kind(objs: list, path) -> str:
    """What a cryoDRGN pickle file holds: 'poses' (R, trans), 'rotations', 'ctf', 'latents'
    (mu and logvar, or z alone) or 'index'."""
    o = objs[0]
    a = o if isinstance(o, np.ndarray) else None
    if isinstance(o, (tuple, list)) and len(o) == 2 and np.ndim(o[0]) == 3:
        return "poses"
    if a is not None and a.ndim == 3 and a.shape[1:] == (3, 3):
        return "rotations"
    if a is not None and a.ndim == 1 and np.issubdtype(a.dtype, np.integer):
        return "index"
    if a is not None and a.ndim == 2 and np.issubdtype(a.dtype, np.floating):
        if len(objs) == 2 and np.ndim(objs[1]) == 2:
            return "latents"
        boxes = a[:, 0] if a.shape[1] == 9 else None
        if boxes is not None and (boxes > 0).all() and (boxes == np.round(boxes)).all() \
                and (a[:, 1] > 0).all():
            return "ctf"
        if len(objs) == 1:
            return "latents"
    raise InputFileError(path, "not a cryoDRGN pose, CTF, latent or index pickle")


def concat_pickles(paths, out: str | os.PathLike) -> tuple[str, int]:
    """Concatenate cryoDRGN pickles of one kind into `out`. -> (kind, particles written)."""
    from cryoscape.core.io.cryodrgn import load_index
    from cryoscape.core.io.pickles import load_pickles, save_pickle

    loaded = {p: load_pickles(p) for p in paths}
    kinds = {p: pickle_kind(objs, p) for p, objs in loaded.items()}
    first = paths[0]
    for p, k in kinds.items():
        if k != kinds[first]:
            raise InputFileError(p, f"holds {k}, {first} holds {kinds[first]}: concatenate "
                                    "pickles of one kind")
    kind = kinds[first]
    if kind == "index":
        ind = np.unique(np.concatenate([load_index(p) for p in paths]))
        save_pickle(out, ind.astype(np.int64))
        return kind, len(ind)
    if kind == "poses":
        parts = [[np.asarray(o[0][0]), np.asarray(o[0][1])] for o in loaded.values()]
        for p, (R, t) in zip(paths, parts):
            if t.shape != (len(R), 2):
                raise InputFileError(p, f"translations of shape {t.shape} for {len(R)} rotations")
        obj = (np.concatenate([R for R, _ in parts]), np.concatenate([t for _, t in parts]))
        save_pickle(out, obj)
        return kind, len(obj[0])
    if kind == "ctf":
        _same_or_raise({p: float(o[0][0, 0]) for p, o in loaded.items()}, "box size", " px")
        _same_or_raise({p: float(o[0][0, 1]) for p, o in loaded.items()}, "pixel size", " A")
    ref = [np.shape(a)[1:] for a in loaded[first]]
    for p, objs in loaded.items():
        if [np.shape(a)[1:] for a in objs] != ref:
            raise InputFileError(p, f"holds {kind} of shape {[np.shape(a) for a in objs]}, "
                                    f"{first} {[np.shape(a) for a in loaded[first]]}: the "
                                    "files do not match")
    arrays = [np.concatenate([np.asarray(o[j]) for o in loaded.values()])
              for j in range(len(ref))]
    save_pickle(out, *arrays)
    return kind, len(arrays[0])


def _common_columns(tables: list, what: str) -> list:
    """The columns every table has (in the first's order); a warning names the others."""
    columns = [c for c in tables[0].columns if all(c in t.columns for t in tables)]
    dropped = sorted({c for t in tables for c in t.columns} - set(columns))
    if dropped:
        warn(f"{what} columns not in every file are left out: {', '.join(dropped)}")
    return columns


def _merge_optics(stars, columns) -> tuple:
    """(merged optics table, per star {its group number: merged number}): groups equal in
    every column but their number and name are merged, the others renumbered (and renamed
    where their name is taken)."""
    import pandas as pd

    rows, keys, names, remaps = [], {}, set(), []
    for s in stars:
        remap = {}
        for row in s.optics[columns].to_dict("records"):
            key = tuple((k, str(v)) for k, v in row.items()
                        if k not in ("rlnOpticsGroup", "rlnOpticsGroupName"))
            if key not in keys:
                keys[key] = len(keys) + 1
                new = row | {"rlnOpticsGroup": keys[key]}
                if "rlnOpticsGroupName" in new:
                    if new["rlnOpticsGroupName"] in names:
                        new["rlnOpticsGroupName"] = f"opticsGroup{keys[key]}"
                    names.add(new["rlnOpticsGroupName"])
                rows.append(new)
            remap[row["rlnOpticsGroup"]] = keys[key]
        remaps.append(remap)
    optics = pd.DataFrame(rows, columns=columns)
    optics["rlnOpticsGroup"] = optics["rlnOpticsGroup"].astype(np.int64)
    return optics, remaps


def rebase_image_names(star, out: str | os.PathLike):
    """rlnImageName of `star` (read from its file) with each stack named so that a .star
    written as `out` finds it (unchanged where it already does, or where the stack cannot be
    found at all)."""
    from cryoscape.core.io.downsample import relative_name
    from cryoscape.core.io.paths import resolve
    from cryoscape.core.io.star import star_image_names

    names, which, idx = star_image_names(star)
    new = []
    for name in names:
        try:
            found = resolve(name, star.path)
        except InputFileError:
            new.append(name)
            continue
        try:
            same = resolve(name, out).samefile(found)
        except InputFileError:
            same = False
        new.append(name if same else relative_name(found, out))
    if new == names:
        return star.particles["rlnImageName"]
    return [f"{i + 1:06d}@{new[w]}" for w, i in zip(which, idx)]


def concat_stars(paths, out: str | os.PathLike):
    """The particles of the .star files `paths` in one StarFile: identical optics groups
    merged, others renumbered; image names rebased to `out`'s folder; columns that not every
    file has are dropped with a warning."""
    import pandas as pd
    from cryoscape.core.io.stack import common_value, star_box_or_stack
    from cryoscape.core.io.star import StarFile, read_star, star_apix

    out = Path(out)
    stars = [read_star(p) for p in paths]
    with_optics = [s.optics is not None for s in stars]
    if any(with_optics) and not all(with_optics):
        odd = paths[with_optics.index(not with_optics[0])]
        raise InputFileError(odd, "mixes RELION 3.0 and 3.1+ files (one has a data_optics "
                                  "table, the other not): concatenate files of one version")
    _same_or_raise({p: star_box_or_stack(s) for p, s in zip(paths, stars)}, "box size", " px")
    _same_or_raise({p: common_value(star_apix(s), "pixel size", p) for p, s in zip(paths, stars)},
                   "pixel size", " A")
    columns = _common_columns([s.particles for s in stars], "particle")
    optics, remaps = None, [{}] * len(stars)
    if all(with_optics):
        opt_columns = _common_columns([s.optics for s in stars], "optics")
        if "rlnOpticsGroup" not in opt_columns:
            raise CryoscapeError("an optics table has no rlnOpticsGroup column")
        optics, remaps = _merge_optics(stars, opt_columns)
        if len(optics) > 1 and "rlnOpticsGroup" not in columns:
            raise CryoscapeError("the files have different optics groups but their particles "
                                 "have no rlnOpticsGroup column")
    tables = []
    for p, s, remap in zip(paths, stars, remaps):
        parts = s.particles[columns].copy()
        if "rlnImageName" in parts.columns:
            parts["rlnImageName"] = rebase_image_names(s, out)
        if remap and "rlnOpticsGroup" in parts.columns:
            group = parts["rlnOpticsGroup"].map(remap)
            if group.isna().any():
                raise InputFileError(p, "particles refer to an optics group that data_optics "
                                        "lacks")
            parts["rlnOpticsGroup"] = group.astype(np.int64)
        tables.append(parts)
    first = stars[0]
    return StarFile(pd.concat(tables, ignore_index=True), optics, first.version, None,
                    first.particles_block, dict(first.other))
