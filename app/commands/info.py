"""Describe what a file holds: image stack or map, .star, .cs, .txt, pickle, or a run folder.

A run folder: how training stands (status.json), epochs, zdim, box, pixel size, particles and
their file, the last loss and time per epoch. A folder of runs and datasets (as `cryoscape
demo` makes): each dataset file and each run in it.
"""
from __future__ import annotations


def add_args(parser):
    parser.add_argument("path", help="a .mrcs/.mrc, .star, .cs, .txt, .pkl file or a run folder")


def _describe(obj) -> str:
    import numpy as np
    if isinstance(obj, np.ndarray):
        return f"array {obj.dtype} {list(obj.shape)}"
    if isinstance(obj, (tuple, list)):
        kind = "tuple" if isinstance(obj, tuple) else "list"
        inner = ", ".join(_describe(o) for o in obj[:4]) + (", ..." if len(obj) > 4 else "")
        return f"{kind} of {len(obj)}: ({inner})"
    if isinstance(obj, dict):
        keys = list(obj)[:8]
        return f"dict of {len(obj)}: " + ", ".join(f"{k!r}: {_describe(obj[k])}" for k in keys)
    return f"{type(obj).__name__} {obj!r}"[:200]


def _checkpoint(path) -> list[str]:
    from cryoscape.core.io.pickles import load_checkpoint
    ck = load_checkpoint(path)
    lines = [f"torch checkpoint: {', '.join(map(str, ck)) if isinstance(ck, dict) else type(ck)}"]
    if isinstance(ck, dict):
        if "epoch" in ck:
            lines.append(f"  epoch {ck['epoch']}")
        state = ck.get("model_state_dict")
        if isinstance(state, dict):
            n = sum(int(v.numel()) for v in state.values() if hasattr(v, "numel"))
            lines.append(f"  model: {len(state)} tensors, {n} parameters")
    return lines


def _pickle(path) -> list[str]:
    import zipfile

    import numpy as np
    from cryoscape.core.io.pickles import load_pickles
    if zipfile.is_zipfile(path):
        return _checkpoint(path)
    objs = load_pickles(path)
    lines = [f"pickle: {len(objs)} object(s)"]
    for i, o in enumerate(objs):
        lines.append(f"  [{i}] {_describe(o)}")
    o = objs[0]
    if isinstance(o, np.ndarray) and o.ndim == 2 and o.shape[1] == 9:
        lines.append(f"  looks like cryoDRGN CTF parameters; first: D={o[0, 0]:g} "
                     f"apix={o[0, 1]:g} dfU={o[0, 2]:g} dfV={o[0, 3]:g} kV={o[0, 5]:g}")
    elif isinstance(o, tuple) and len(o) == 2 and np.ndim(o[0]) == 3:
        lines.append(f"  looks like cryoDRGN poses (rotations, translations/D) of {len(o[0])}")
    elif isinstance(o, np.ndarray) and o.ndim == 3 and o.shape[1:] == (3, 3):
        lines.append(f"  looks like cryoDRGN rotations of {len(o)} particles (no translations)")
    elif len(objs) == 2 and all(np.ndim(x) == 2 for x in objs):
        lines.append(f"  looks like cryoDRGN latents: mu and logvar, zdim {objs[0].shape[1]}")
    elif isinstance(o, np.ndarray) and o.ndim == 1 and np.issubdtype(o.dtype, np.integer):
        lines.append(f"  looks like an index of {len(o)} particles")
    return lines


def _mrc(path) -> list[str]:
    from cryoscape.core.io.mrc import read_mrc_header
    h = read_mrc_header(path)
    kind = "image stack" if h.is_stack else "volume"
    lines = [(f"MRC {kind}: shape {list(h.shape)} ({h.dtype}), {h.apix:.4g} A/px, "
              f"origin {h.origin}")]
    if h.is_stack and len(h.shape) == 3:
        lines.append(f"  {h.shape[0]} images of {h.shape[2]} x {h.shape[1]} px")
    return lines + _nonfinite(path, h)


def _nonfinite(path, h, chunk_bytes: int = 1 << 26) -> list[str]:
    """A warning line if the data hold NaN or inf values (read in bounded chunks)."""
    import numpy as np
    if h.dtype.kind != "f":
        return []
    data = np.memmap(path, dtype=h.dtype, mode="r", offset=h.data_offset, shape=h.shape)
    data = data.reshape(-1, *h.shape[-2:])  # 2D slices: images of a stack, sections of a map
    step = max(1, chunk_bytes // (data[0].nbytes or 1))
    bad = np.concatenate([~np.isfinite(data[i:i + step]).all(axis=(1, 2))
                          for i in range(0, len(data), step)])
    if not bad.any():
        return []
    first = int(np.argmax(bad)) + 1
    if not h.is_stack:
        return [f"  WARNING: the map holds NaN or inf values ({bad.sum()} sections, first {first})"]
    return [(f"  WARNING: {bad.sum()} image(s) hold NaN or inf values (first: image {first}, "
             "1-based); training and reconstruction refuse them")]


def _star(path) -> list[str]:
    import numpy as np
    from cryoscape.core.io.star import read_star, star_apix, star_box, star_image_names
    s = read_star(path)
    cols = list(s.particles.columns)
    lines = [(f"RELION star (version {s.version}): {len(s)} particles, "
              f"{0 if s.optics is None else len(s.optics)} optics group(s)")]
    box, apix = star_box(s), star_apix(s)
    if box is not None:
        lines.append(f"  box {np.unique(box).tolist()} px")
    if apix is not None:
        lines.append(f"  pixel size {np.unique(apix.astype(float).round(5)).tolist()} A")
    lines.append(f"  poses: {'yes' if 'rlnAngleRot' in cols else 'no'}; "
                 f"CTF: {'yes' if 'rlnDefocusU' in cols else 'no'}")
    if "rlnImageName" in cols:
        stacks = star_image_names(s)[0]
        lines.append(f"  {len(stacks)} stack(s), first: {stacks[0] if stacks else '-'}")
    lines.append(f"  columns: {', '.join(cols)}")
    return lines


def _cs(path) -> list[str]:
    import numpy as np
    from cryoscape.core.io.cs import read_cs
    a = read_cs(path)
    names = a.dtype.names
    groups = sorted({n.split("/")[0] for n in names})
    lines = [f"cryoSPARC .cs: {len(a)} particles; field groups: {', '.join(groups)}"]
    if "blob/shape" in names and len(a):
        lines.append(f"  box {sorted(set(a['blob/shape'][:, 0].tolist()))} px, pixel size "
                     f"{np.unique(a['blob/psize_A'].astype(float).round(5)).tolist()} A")
        lines.append(f"  {len(set(a['blob/path'].tolist()))} stack(s)")
    lines.append(f"  poses: {'yes' if any(n.endswith('/pose') for n in names) else 'no'}; "
                 f"CTF: {'yes' if 'ctf/df1_A' in names else 'no'}")
    return lines


def _txt(path) -> list[str]:
    from cryoscape.core.io.stack import open_images
    src = open_images(path, lazy=True)
    return [(f"list of {len(src.stacks)} stack(s): {len(src)} images of {src.D} px, "
             f"{src.apix:.4g} A/px")]


def _state(path) -> str:
    """How training stands, from status.json (cryoscape runs)."""
    import json
    import os

    from cryoscape.core.train.rundir import RunDir
    try:
        st = json.loads(RunDir(path).status.read_text())
    except (OSError, ValueError):
        return "state unknown (no status.json: a cryoDRGN run, or not trained by cryoscape)"
    state, epoch, total = st.get("state"), st.get("epoch"), st.get("num_epochs")
    of = f"{epoch} of {total} epochs" if total else f"{epoch} epochs"
    if state == "running":
        try:
            os.kill(int(st.get("pid")), 0)
        except ProcessLookupError:
            return (f"stopped unexpectedly after {of} (status.json says running, but its "
                    f"process {st.get('pid')} is gone; --resume continues)")
        except (OSError, TypeError, ValueError):
            pass
        return f"running: {of} done (process {st.get('pid')}, updated {st.get('time')})"
    if state == "failed":
        return f"failed after {of}: {st.get('message', 'no message')}"
    return {"done": f"finished: {of}", "paused": f"paused after {of} (--resume continues)",
            "stopped": f"stopped after {of} (--resume continues)"}.get(state, f"{state}: {of}")


def _particle_count(run) -> int | None:
    """Training particles: rows of the latents, else the (indexed) particle file's images."""
    from cryoscape.core.errors import CryoscapeError
    try:
        if run.zdim and run.epochs:
            return len(run.latents())
        ind = run.config["dataset_args"].get("ind")
        if ind:
            from cryoscape.core.io.cryodrgn import load_index
            return len(load_index(ind))
        from cryoscape.core.io.stack import open_images
        return len(open_images(run.particles_path, lazy=True,
                               datadir=run.config["dataset_args"].get("datadir")))
    except (CryoscapeError, OSError, TypeError):
        return None


def _run(path) -> list[str]:
    import os
    from pathlib import Path

    from cryoscape.core.run import Run
    run = Run.open(path)
    epochs = list(run.epochs)
    n, data = _particle_count(run), run.particles_path
    data = data if data is None else Path(os.path.normpath(data))
    where = "" if data is None or data.exists() else " (not found here)"
    apix = f"{run.apix:.4g} A/px" + ("" if run.apix_known else " (unknown: 1 assumed)")
    saved = f"{epochs[:3]}{'...' if len(epochs) > 3 else ''}"
    lines = [f"run folder: {_state(path)}",
             f"  {len(epochs)} epoch(s) saved {saved}; zdim {run.zdim}, box {run.D}, {apix}",
             f"  {'?' if n is None else n} particles from {data}{where}"]
    rows = [r for r in run.metrics() if isinstance(r.get("loss"), (int, float))]
    if rows:
        times = [r["time"] for r in rows if isinstance(r.get("time"), (int, float))]
        per = f"; {sum(times) / len(times):.3g} s per epoch" if times else ""
        lines.append(f"  last loss {rows[-1]['loss']:.5g} (epoch {rows[-1].get('epoch')}){per}")
    return lines


DATASETS = (".star", ".cs", ".txt")  # particle files; a folder's stacks where it has none


def _folder(path) -> list[str]:
    """A run folder, or a folder of runs and datasets (as `cryoscape demo` makes)."""
    from cryoscape.core.errors import CryoscapeError, InputFileError
    from cryoscape.core.train.rundir import RunDir
    try:
        return _run(path)
    except InputFileError:
        if RunDir(path).config.exists():  # a run, but a broken one
            raise
    subdirs = sorted(p for p in path.iterdir() if p.is_dir())
    runs = [p for p in subdirs if RunDir(p).config.exists()]
    data = []
    for d in [path, *(p for p in subdirs if p not in runs)]:
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in DATASETS)
        data += files or sorted(d.glob("*.mrcs"))
    described = []
    for f in data:
        reader = _star if f.suffix.lower() == ".star" else _cs if f.suffix.lower() == ".cs" \
            else _txt if f.suffix.lower() == ".txt" else _mrc
        try:
            described.append(f"  {f.relative_to(path)}: {reader(f)[0]}")
        except CryoscapeError as e:
            if f.suffix.lower() != ".txt":  # a .txt that lists no stacks is not a dataset
                described.append(f"  {f.relative_to(path)}: unreadable ({e})")
    if not runs and not described:
        raise InputFileError(path, "not a run folder, and holds no runs or particle files")
    lines = [f"folder: {len(described)} dataset file(s), {len(runs)} run(s)", *described]
    for r in runs:
        try:
            first, *rest = _run(r)
            lines += [f"  {r.relative_to(path)}/: {first.removeprefix('run folder: ')}"]
            lines += [f"  {ln}" for ln in rest]
        except CryoscapeError as e:
            lines.append(f"  {r.relative_to(path)}/: unreadable run ({e})")
    return lines


def main(args):
    from pathlib import Path

    from cryoscape.core.errors import InputFileError
    path = Path(args.path)
    if path.is_dir():
        lines = _folder(path)
    elif not path.exists():
        raise InputFileError(path, "not found")
    else:
        readers = {".mrcs": _mrc, ".mrc": _mrc, ".map": _mrc, ".st": _mrc, ".star": _star,
                   ".cs": _cs, ".pkl": _pickle, ".txt": _txt}
        reader = readers.get(path.suffix.lower())
        if reader is None:
            raise InputFileError(path, "unknown kind of file (expected .mrcs, .mrc, .star, "
                                       ".cs, .txt, .pkl or a run folder)")
        lines = reader(path)
    print(f"{path}")
    print("\n".join(lines))
    return 0
