"""Malformed, hostile and mistaken inputs across the commands, one row each: the exit status,
a fragment of the one-line message, and that nothing was written (every file in the work folder
as it was, the named outputs absent). Warnings: the command works, and says what it assumed."""
from __future__ import annotations

import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from cryoscape.app.cli import main as cli
from cryoscape.core.io.cryodrgn import load_ctf, save_ctf, save_index, save_poses
from cryoscape.core.io.mrc import write_mrc

N, D = 40, 16


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A work folder: a simulated dataset (sim/), a one-epoch run (run/) and bad files."""
    from cryoscape.core.simulate.dataset import simulate
    from cryoscape.core.train import TrainConfig, train

    root = tmp_path_factory.mktemp("bad_inputs")
    sim = simulate("discrete", N, root / "sim", D=D, states=2, ctf=True, seed=0).path
    train(TrainConfig(particles=str(sim / "particles.star"), zdim=1, num_epochs=1,
                      enc_dim=16, dec_dim=16, threads=1, seed=0), root / "run", progress=False)
    shutil.copy(sim / "particles.mrcs", root / "s.mrcs")
    os.link(root / "s.mrcs", root / "hard.mrcs")
    (root / "afile").write_text("a file where a folder is expected")
    np.savetxt(root / "z33.txt", np.arange(9.0).reshape(3, 3))
    np.savetxt(root / "znan.txt", [[0.5], [np.nan]])

    star = (sim / "particles.star").read_text().splitlines()
    first = next(i for i, ln in enumerate(star) if ln.startswith("000001@"))
    (root / "empty.star").write_text("\n".join(star[:first]) + "\n")
    row = star[first].split("\t")
    (root / "angle.star").write_text("\n".join(
        star[:first] + ["\t".join([row[0], "abc", *row[2:]])] + star[first + 1:]) + "\n")
    (root / "defocus.star").write_text("\n".join(
        star[:first + 2] + ["\t".join([*row[:6], "x1", *row[7:]])] + star[first + 3:]) + "\n")

    for name in ("unsafe", "plain"):
        shutil.copytree(root / "run", root / name)
    with open(root / "plain" / "weights.pkl", "wb") as f:
        pickle.dump({"model_state_dict": {}}, f, protocol=4)
    import torch
    torch.save({"model_state_dict": _Hostile()}, root / "unsafe" / "weights.pkl")
    torch.save({"epoch": _Hostile()}, root / "unsafe" / "checkpoint.pt")

    ctf = load_ctf(sim / "ctf.pkl")
    ctf[:, 0], ctf[:, 1] = 2 * D, ctf[:, 1] / 2  # made for a 32 px box at half the pixel size
    save_ctf(root / "ctf32.pkl", ctf)
    save_ctf(root / "ctf0.pkl", np.zeros((N, 9), np.float32))
    save_poses(root / "R0.pkl", np.zeros((N, 3, 3), np.float32))
    save_index(root / "dup.pkl", np.array([0, 1, 2, 2, 5]))
    imgs = np.ones((5, 8, 8), np.float32)
    imgs[3, 2, 2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile's note on the NaN
        write_mrc(root / "nan.mrcs", imgs)
    return root


class _Hostile:
    """Runs code when unpickled (it only prints, and must never get the chance)."""

    def __reduce__(self):
        return print, ("unpickled code ran",)


UNSAFE_ADVICE = "weights_only=False"

# (id, command line, exit status, fragment of the message on stderr, outputs that must not exist)
ERRORS = [
    ("downsample onto its input", "downsample s.mrcs -D 8 -o s.mrcs", 1,
     "s.mrcs: the output is the input", []),
    ("downsample onto a hard link of its input",
     "downsample s.mrcs -D 8 -o hard.mrcs", 1, "the output is the input", []),
    ("downsample onto the stack its .star names",
     "downsample sim/particles.star -D 8 -o sim/particles.mrcs", 1,
     "the output is the input", []),
    ("parse-poses onto its input", "parse-poses sim/particles.star -o sim/particles.star", 1,
     "the output is the input", []),
    ("select onto the run's particle file",
     "select run --outliers 0 -o sim/particles.star", 1, "the output is the input", []),
    ("fsc curve onto a map", "fsc nan.mrcs s.mrcs -o s.mrcs", 1,
     "the output is the input", []),
    ("eval-vol: rows of 3 for zdim 1", "eval-vol run --z-file z33.txt -o vz", 1,
     "z33.txt: holds latents of shape (3, 3); the run needs rows of zdim 1", ["vz"]),
    ("eval-vol: NaN latent in a file", "eval-vol run --z-file znan.txt -o vn", 1,
     "znan.txt: latent 1 (0-based) holds NaN or inf", ["vn"]),
    ("eval-vol: inf latent given", "eval-vol run --z inf -o v.mrc", 1,
     "--z: latent 0 (0-based) holds NaN or inf", ["v.mrc"]),
    ("parse-poses -D -5", "parse-poses sim/particles.star -D -5 -o p.pkl", 2,
     "argument -D: must be a positive whole number, got '-5'", ["p.pkl"]),
    ("parse-poses -D 0", "parse-poses sim/particles.star -D 0 -o p.pkl", 2,
     "argument -D: must be a positive whole number, got '0'", ["p.pkl"]),
    ("parse-ctf -D 0", "parse-ctf sim/particles.star -D 0 -o c.pkl", 2,
     "argument -D: must be a positive whole number", ["c.pkl"]),
    ("backproject --apix -1", "backproject sim/particles.star --apix -1 -o m.mrc", 2,
     "argument --apix: must be a positive number, got '-1'", ["m.mrc"]),
    ("backproject --batch-size 0", "backproject sim/particles.star --batch-size 0 -o m.mrc", 2,
     "argument --batch-size: must be a positive whole number, got '0'", ["m.mrc"]),
    ("analyze --k 0", "analyze run --k 0 -o rep", 2,
     "argument --k: must be a positive whole number, got '0'", ["rep"]),
    ("traverse -n 0", "traverse run --pc 1 -n 0 -o tr", 2,
     "argument -n: must be a positive whole number, got '0'", ["tr"]),
    ("eval-vol -b 0", "eval-vol run --z 0 1 -b 0 -o vb", 2,
     "argument -b/--batch: must be a positive whole number", ["vb"]),
    ("encode -b 0", "encode run sim/particles.star -b 0 -o z.npy", 2,
     "argument -b/--batch-size: must be a positive whole number", ["z.npy"]),
    ("a CTF pickle of zeros",
     "backproject sim/particles.mrcs --poses sim/poses.pkl --ctf ctf0.pkl -o m.mrc", 1,
     "ctf0.pkl: CTF parameters of particle 0 (0-based) are not usable: box 0, pixel size 0",
     ["m.mrc"]),
    ("poses that are not rotations",
     "backproject sim/particles.mrcs --poses R0.pkl -o m.mrc", 1,
     "R0.pkl: pose 0 (0-based) is not a rotation matrix", ["m.mrc"]),
    ("train into a file's folder",
     "train sim/particles.star -o afile/run -n 1 --no-progress", 1,
     "afile/run: cannot write:", []),
    ("backproject into a file's folder", "backproject sim/particles.star -o afile/m.mrc", 1,
     "afile/m.mrc: cannot write:", []),
    ("parse-poses into a file's folder", "parse-poses sim/particles.star -o afile/p.pkl", 1,
     "afile/p.pkl: cannot write:", []),
    ("downsample into a file's folder",
     "downsample s.mrcs -D 8 -o afile/d/x.mrcs", 1,
     "afile/d/x.mrcs: cannot write:", []),
    ("eval-vol one map into a file's folder",
     "eval-vol run --z 0 -o afile/v.mrc", 1, "afile/v.mrc: cannot write:", []),
    ("eval-vol maps into a file's folder",
     "eval-vol run --z 0 1 -o afile/vols", 1, "afile/vols: cannot write:", []),
    ("parse-poses: a word for an angle", "parse-poses angle.star -o p.pkl", 1,
     "angle.star: column rlnAngleRot of data_particles, row 1: 'abc' is not a number",
     ["p.pkl"]),
    ("parse-ctf: a word for a defocus", "parse-ctf defocus.star -o c.pkl", 1,
     "defocus.star: column rlnDefocusU of data_particles, row 3: 'x1' is not a number",
     ["c.pkl"]),
    ("code-running weights", "eval-vol unsafe --z 0 -o v.mrc", 1,
     "unsafe/weights.pkl: refused: the checkpoint references print", ["v.mrc"]),
    ("code-running weights, several maps", "eval-vol unsafe --z 0 1 -o vols", 1,
     "unsafe/weights.pkl: refused: the checkpoint references print", ["vols"]),
    ("eval-vol: an epoch not saved", "eval-vol run --epoch 9 --z 0 1 -o vols", 1,
     "run: no weights for epoch 9 (saved epochs: [1])", ["vols"]),
    ("code-running resume checkpoint", "train -o unsafe --resume --no-progress",
     1, "unsafe/checkpoint.pt: refused: the checkpoint references print", []),
    ("plain-pickle weights", "eval-vol plain --z 0 -o v.mrc", 1,
     "plain/weights.pkl: refused: a plain pickle, not a torch checkpoint", ["v.mrc"]),
    ("duplicate --ind indices",
     "backproject sim/particles.star --ind dup.pkl -o m.mrc --no-half-maps", 1,
     "dup.pkl: index lists 1 particle(s) more than once (particle 2 2 times)", ["m.mrc"]),
    ("a .star with a header and no rows", "parse-poses empty.star -o p.pkl", 1,
     "empty.star: no particles: the table data_particles has no rows", ["p.pkl"]),
    ("info on a .star with no rows", "info empty.star", 1,
     "empty.star: no particles", []),
]


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("command, status, message, absent",
                         [pytest.param(*row[1:], id=row[0]) for row in ERRORS])
def test_refused_with_one_line_and_nothing_written(ws, monkeypatch, capsys, command, status,
                                                   message, absent):
    monkeypatch.chdir(ws)
    before = _snapshot(ws)
    try:
        code = cli(command.split())
    except SystemExit as e:  # argparse's own one-line usage errors
        code = e.code
    out, err = capsys.readouterr()
    assert code == status
    assert message in err
    assert "Traceback" not in err and UNSAFE_ADVICE not in err + out
    assert "unpickled code ran" not in out
    assert _snapshot(ws) == before  # inputs untouched, no output, no temporary left
    assert not any((ws / a).exists() for a in absent)


def test_ctf_for_another_box_is_rescaled_with_a_warning(ws, monkeypatch, capsys):
    """As cryoDRGN, a CTF pickle made for another box keeps its field of view; said once."""
    from cryoscape.core.io.mrc import read_mrc

    monkeypatch.chdir(ws)
    out = ws / "warned" / "m.mrc"
    assert cli(["backproject", "sim/particles.mrcs", "--poses", "sim/poses.pkl", "--ctf", "ctf32.pkl",
                "-o", str(out), "--no-half-maps"]) == 0
    err = capsys.readouterr().err
    apix = load_ctf(ws / "sim" / "ctf.pkl")[0, 1]
    assert (f"warning: ctf32.pkl: the CTF parameters are for a 32 px box at {apix / 2:.4g} A/px"
            f", the images are 16 px: their pixel size is taken as {apix:.4g} A/px") in err
    assert read_mrc(out)[1] == pytest.approx(apix)


def test_info_flags_nan_pixels(ws, capsys):
    assert cli(["info", str(ws / "nan.mrcs")]) == 0
    assert "WARNING: 1 image(s) hold NaN or inf values (first: image 4" in capsys.readouterr().out
    assert cli(["info", str(ws / "s.mrcs")]) == 0
    assert "NaN" not in capsys.readouterr().out
