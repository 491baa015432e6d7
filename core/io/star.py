"""RELION .star files: 3.0 (one table, origins in pixels), 3.1+ and 5 (a `data_optics` table,
before or after the particles, any number of optics groups). Read here as `starfile` reads them
(its line-by-line parser took 3 of the 4.3 s of opening a 1M-particle file; pandas reads a
loop's rows at once), written with `starfile`.

Per-particle values are looked up in the particle table first, then in its optics group, so
several groups with their own pixel size, box, voltage, Cs and amplitude contrast just work.
Writers keep every column, the optics table and any other blocks.
"""
from __future__ import annotations

import io
import os
import re
import shlex
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import starfile
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.io.atomic import atomic_path
from cryoscape.core.io.cryodrgn import as_index
from cryoscape.core.poses import shifts_from_origin, shifts_to_origin
from cryoscape.core.rotations import matrix_to_relion_euler, relion_euler_to_matrix

EULER = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
DEFOCUS = ["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]
# columns read as numbers: a value that is not one is reported when the file is read
NUMERIC = [*EULER, *DEFOCUS, "rlnOriginX", "rlnOriginY", "rlnOriginXAngst", "rlnOriginYAngst",
           "rlnPhaseShift", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
           "rlnImagePixelSize", "rlnPixelSize", "rlnDetectorPixelSize", "rlnMagnification",
           "rlnImageSize", "rlnOpticsGroup"]


@dataclass
class StarFile:
    """A particle star file: the particle table, the optics table (3.1+) and other blocks."""
    particles: pd.DataFrame
    optics: pd.DataFrame | None = None
    version: int = 30001
    path: str | None = None
    particles_block: str = "particles"
    other: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.particles)

    @property
    def name(self) -> str:
        return self.path or "<star>"


def read_star(path: str | os.PathLike) -> StarFile:
    """Read a RELION particle star file (any version)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputFileError(path, "file not found")
    try:
        blocks = _read_blocks(path)
    except Exception as e:  # noqa: BLE001 (pandas raises assorted errors for damaged files)
        raise InputFileError(path, f"not a readable STAR file ({e})") from None
    tables = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    pname = next((k for k, v in tables.items() if "rlnImageName" in v.columns), None)
    if pname is None:
        pname = next((k for k, v in tables.items() if k != "optics"), None)
    if pname is None:
        raise InputFileError(path, "no particle table (data_particles or data_images) found")
    optics = tables.get("optics")
    other = {k: v for k, v in blocks.items() if k not in (pname, "optics")}
    with open(path, errors="replace") as f:
        head = f.read(4096)
    m = re.search(r"#\s*version\s+(\d{5})", head)
    version = int(m.group(1)) if m else (30001 if optics is not None else 30000)
    particles = blocks[pname].reset_index(drop=True)
    if particles.empty:
        raise InputFileError(path, f"no particles: the table data_{pname} has no rows")
    for table, block in ((particles, pname), (optics, "optics")):
        _check_numbers(table, path, block)
    return StarFile(particles, optics, version, path, pname, other)


def _read_blocks(path: str) -> dict:
    """{name: DataFrame (a loop_) or dict (name-value pairs)} of every `data_` block, values
    parsed as numbers where they are (as starfile.read with always_dict)."""
    with open(path, errors="replace") as f:
        text = f.read()
    starts = list(re.finditer(r"^data_(\S*)", text, re.MULTILINE))
    ends = [m.start() for m in starts[1:]] + [len(text)]
    return {m[1]: _block(text[m.end():end]) for m, end in zip(starts, ends)}


def _block(body: str):
    """A block's loop_ as a DataFrame, or its `_name value` pairs as a dict."""
    pos, loop, names, pairs = 0, False, [], {}
    while pos < len(body):              # the header, line by line; the rows all at once
        end = body.find("\n", pos)
        end = len(body) if end < 0 else end
        line = body[pos:end].strip()
        if line.startswith("loop_"):
            loop = True
        elif line.startswith("_") and loop:
            names.append(line.split()[0][1:])
        elif line.startswith("_"):
            key, value = shlex.split(line)
            pairs[key[1:]] = _number(value)
        elif line and not line.startswith("#"):
            break                       # the loop's first row
        pos = end + 1
    if not loop:
        return pairs
    rows = body[pos:]
    if not rows.strip():
        return pd.DataFrame(columns=names)
    table = pd.read_csv(io.StringIO(rows.replace("'", '"')), sep=r"\s+", header=None,
                        comment="#", keep_default_na=False, na_values=["nan", "NaN", "<NA>"],
                        engine="c")
    if table.shape[1] != len(names):
        raise ValueError(f"a loop of {len(names)} columns has rows of {table.shape[1]} values")
    table.columns = names
    return table


def _number(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _check_numbers(table: pd.DataFrame | None, path, block: str) -> None:
    """Raise naming the file, block, column and row of a NUMERIC column's first non-number."""
    for name in NUMERIC if table is not None else ():
        if name in table.columns and not pd.api.types.is_numeric_dtype(table[name]):
            values = pd.to_numeric(table[name], errors="coerce")
            row = int(np.argmax(values.isna().to_numpy() & table[name].notna().to_numpy()))
            raise InputFileError(path, f"column {name} of data_{block}, row {row + 1}: "
                                       f"{table[name].iloc[row]!r} is not a number")


def write_star(path: str | os.PathLike, star: StarFile) -> None:
    """Write atomically: optics table first (if any), the particles, then other blocks."""
    blocks = {}
    if star.optics is not None:
        blocks["optics"] = star.optics
    blocks[star.particles_block] = star.particles
    blocks.update(star.other)
    with atomic_path(path) as tmp:
        starfile.write(blocks, tmp, float_format="%.6f")


def subset_star(star: StarFile, ind) -> StarFile:
    """The particles at `ind` (in that order), with every column and the whole optics table."""
    parts = star.particles.iloc[as_index(ind)].reset_index(drop=True)
    return StarFile(parts, star.optics, star.version, star.path, star.particles_block,
                    dict(star.other))


def column(star: StarFile, name: str) -> np.ndarray | None:
    """Per-particle values of `name`, from the particle table or the particle's optics group."""
    if name in star.particles.columns:
        return star.particles[name].to_numpy()
    opt = star.optics
    if opt is None or name not in opt.columns:
        return None
    if "rlnOpticsGroup" not in opt.columns or "rlnOpticsGroup" not in star.particles.columns:
        if len(opt) > 1:
            raise InputFileError(star.name, "several optics groups, but the particles have no "
                                            "rlnOpticsGroup column")
        return np.repeat(opt[name].to_numpy()[:1], len(star))
    groups = star.particles["rlnOpticsGroup"].to_numpy()
    lookup = pd.Series(opt[name].to_numpy(), index=opt["rlnOpticsGroup"].to_numpy())
    missing = ~np.isin(groups, lookup.index)
    if missing.any():
        raise InputFileError(star.name, f"particles refer to optics group "
                                        f"{groups[missing][0]}, which data_optics lacks")
    return lookup.loc[groups].to_numpy()


def star_apix(star: StarFile) -> np.ndarray | None:
    """Per-particle pixel size (A), or None if the file does not say."""
    for name in ("rlnImagePixelSize", "rlnPixelSize"):
        v = column(star, name)
        if v is not None:
            return v.astype(np.float64)
    det, mag = column(star, "rlnDetectorPixelSize"), column(star, "rlnMagnification")
    if det is not None and mag is not None:
        return det.astype(np.float64) * 1e4 / mag.astype(np.float64)
    return None


def star_box(star: StarFile) -> np.ndarray | None:
    """Per-particle box size (px) from rlnImageSize, or None."""
    v = column(star, "rlnImageSize")
    return None if v is None else v.astype(np.int64)


def _fill(value, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()


def star_poses(star: StarFile, D: int | None = None, apix: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(R [N,3,3], shifts [N,2] px). Origins in A are converted with the particle's pixel size
    (or `apix`); if D differs from the file's own box, shifts are scaled to a box of D."""
    missing = [c for c in EULER if c not in star.particles.columns]
    if missing:
        raise InputFileError(star.name, f"no poses: missing column(s) {', '.join(missing)}")
    df = star.particles
    R = relion_euler_to_matrix(df[EULER].to_numpy(dtype=np.float64))
    origin = np.zeros((len(star), 2))
    if {"rlnOriginX", "rlnOriginY"} <= set(df.columns):
        origin = df[["rlnOriginX", "rlnOriginY"]].to_numpy(dtype=np.float64)
    elif {"rlnOriginXAngst", "rlnOriginYAngst"} <= set(df.columns):
        px = _fill(apix, len(star)) if apix is not None else star_apix(star)
        if px is None:
            raise InputFileError(star.name, "origins are in A but the pixel size is unknown "
                                            "(give --apix)")
        origin = df[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(np.float64) / px[:, None]
    shifts = shifts_from_origin(origin).astype(np.float64)
    box = star_box(star)
    if D is not None and box is not None:
        shifts *= D / box[:, None]
    return R, shifts.astype(np.float32)


def star_ctf(star: StarFile, D: int | None = None, apix: float | None = None,
             w: float | None = None, kv: float | None = None, cs: float | None = None,
             ps: float | None = None) -> np.ndarray:
    """cryoDRGN CTF parameters [N, 9]. The file's values are used where it has them; the
    arguments fill in what it lacks, and kv/cs/w/ps override it (as cryoDRGN's parse_ctf_star)."""
    n = len(star)
    missing = [c for c in DEFOCUS[:2] if c not in star.particles.columns]
    if missing:
        raise InputFileError(star.name, f"missing CTF column(s) {', '.join(missing)}")
    box = star_box(star)
    if box is None and D is None:
        raise InputFileError(star.name, "box size unknown (no rlnImageSize): give -D")
    px = star_apix(star)
    if px is None and apix is None:
        raise InputFileError(star.name, "pixel size unknown: give --apix")
    out = np.zeros((n, 9), dtype=np.float64)
    out[:, 0] = box if box is not None else D
    out[:, 1] = px if px is not None else apix
    out[:, 2] = column(star, "rlnDefocusU")
    out[:, 3] = column(star, "rlnDefocusV")
    ang = column(star, "rlnDefocusAngle")
    out[:, 4] = 0.0 if ang is None else ang
    for j, (name, given, opt) in enumerate([("rlnVoltage", kv, "--kv"),
                                            ("rlnSphericalAberration", cs, "--cs"),
                                            ("rlnAmplitudeContrast", w, "-w"),
                                            ("rlnPhaseShift", ps, "--ps")], start=5):
        v = column(star, name)
        if given is not None:
            out[:, j] = given
        elif v is not None:
            out[:, j] = v
        elif name != "rlnPhaseShift":
            raise InputFileError(star.name, f"missing CTF column {name} (give {opt})")
    return out.astype(np.float32)


def set_star_poses(star: StarFile, rotations, shifts=None) -> StarFile:
    """A copy with Euler angles (and origins, in the file's own units) replaced."""
    parts = star.particles.copy()
    e = matrix_to_relion_euler(rotations)
    for j, c in enumerate(EULER):
        parts[c] = e[:, j]
    if shifts is not None:
        o = shifts_to_origin(shifts).astype(np.float64)
        if "rlnOriginX" in parts.columns or (star.optics is None and
                                             "rlnOriginXAngst" not in parts.columns):
            parts["rlnOriginX"], parts["rlnOriginY"] = o[:, 0], o[:, 1]
        else:
            px = star_apix(star)
            if px is None:
                raise InputFileError(star.name, "pixel size unknown: cannot write origins in A")
            parts["rlnOriginXAngst"], parts["rlnOriginYAngst"] = o[:, 0] * px, o[:, 1] * px
    return StarFile(parts, star.optics, star.version, star.path, star.particles_block,
                    dict(star.other))


def star_image_names(star: StarFile) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Split rlnImageName `NNNNNN@path` (1-based) into (unique paths, path index per particle,
    0-based image index per particle)."""
    if "rlnImageName" not in star.particles.columns:
        raise InputFileError(star.name, "no rlnImageName column: the file names no images")
    # plain string methods over a list: pandas' str.split took 2.7 s of a 1M-particle file
    parts = [n.partition("@") for n in star.particles["rlnImageName"].astype(str).tolist()]
    paths = np.array([p[2] if p[1] else p[0] for p in parts], dtype=object)
    numbers = [p[0] if p[1] else "1" for p in parts]   # no '@': one image per file
    try:
        idx = np.array(numbers, dtype=np.int64) - 1
    except (ValueError, OverflowError):   # the slow way, to name the first bad one
        num = pd.to_numeric(pd.Series(numbers), errors="coerce")
        if num.isna().any():
            bad = star.particles["rlnImageName"].iloc[int(np.argmax(num.isna()))]
            raise InputFileError(star.name, f"bad image name '{bad}' (expected NNNNNN@path)"
                                 ) from None
        idx = num.to_numpy(dtype=np.int64) - 1
    if (idx < 0).any():
        raise InputFileError(star.name, "image numbers in rlnImageName start at 1, found 0")
    codes, uniques = pd.factorize(paths)
    return list(uniques), codes.astype(np.int64), idx


def make_star(image_names, rotations=None, shifts=None, ctf=None, apix: float = 1.0,
              D: int | None = None) -> StarFile:
    """A RELION 3.1 star file from arrays: image names, R [N,3,3], shifts [N,2] px, CTF [N,9].
    One optics group per distinct (pixel size, box, kV, Cs, w)."""
    n = len(image_names)
    parts = pd.DataFrame({"rlnImageName": list(image_names)})
    if ctf is not None:
        ctf = np.asarray(ctf, dtype=np.float64)
        optics_cols = ctf[:, [1, 0, 5, 6, 7]]
    else:
        if D is None:
            raise CryoscapeError("make_star: D is needed without CTF parameters")
        optics_cols = np.tile([apix, D, np.nan, np.nan, np.nan], (n, 1))
    keys, group = np.unique(np.nan_to_num(optics_cols, nan=-1), axis=0, return_inverse=True)
    px = optics_cols[:, 0]
    if rotations is not None:
        e = matrix_to_relion_euler(rotations)
        for j, c in enumerate(EULER):
            parts[c] = e[:, j]
    if shifts is not None:
        o = shifts_to_origin(shifts).astype(np.float64) * px[:, None]
        parts["rlnOriginXAngst"], parts["rlnOriginYAngst"] = o[:, 0], o[:, 1]
    if ctf is not None:
        parts["rlnDefocusU"], parts["rlnDefocusV"] = ctf[:, 2], ctf[:, 3]
        parts["rlnDefocusAngle"], parts["rlnPhaseShift"] = ctf[:, 4], ctf[:, 8]
    parts["rlnOpticsGroup"] = group.reshape(-1) + 1
    optics = pd.DataFrame({"rlnOpticsGroup": np.arange(1, len(keys) + 1),
                           "rlnOpticsGroupName": [f"opticsGroup{i + 1}" for i in range(len(keys))]})
    if ctf is not None:
        optics["rlnAmplitudeContrast"] = keys[:, 4]
        optics["rlnSphericalAberration"] = keys[:, 3]
        optics["rlnVoltage"] = keys[:, 2]
    optics["rlnImagePixelSize"] = keys[:, 0]
    optics["rlnImageSize"] = keys[:, 1].astype(np.int64)
    optics["rlnImageDimensionality"] = 2
    return StarFile(parts, optics, 30001)
