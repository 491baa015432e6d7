"""CLI: info, parse-poses, parse-ctf (cryoDRGN-compatible outputs) and downsample."""
from __future__ import annotations

import os

import numpy as np
import pytest
from cryoscape.app.cli import main as cli
from cryoscape.core.fourier import fft2_center
from cryoscape.core.io import cs as C
from cryoscape.core.io import star as S
from cryoscape.core.io.cryodrgn import load_ctf
from cryoscape.core.io.mrc import read_mrc, write_mrc
from cryoscape.core.io.pickles import load_pickle
from cryoscape.core.io.stack import open_images

PFCRT = "relion/FinalRefinement-OriginalParticles-PfCRT.star"
CSFILE = "cryosparc/cryosparc_P12_J24_001_particles.cs"


@pytest.mark.parametrize("src, args, pose_ref, ctf_ref", [
    (PFCRT, ["-D", "300"], "relion/pose.star.pkl", None),
    ("relion/relion31.star", [], "relion/relion31.pose.pkl", "relion/relion31.ctf.pkl"),
    (CSFILE, ["-D", "180"], "cryosparc/pose.cs.pkl", "cryosparc/ctf2.pkl"),
])
def test_parse_cli_parity(tmp_path, fixtures_dir, src, args, pose_ref, ctf_ref):
    assert cli(["parse-poses", str(fixtures_dir / src), *args, "-o", str(tmp_path / "p.pkl")]) == 0
    rot, trans = load_pickle(tmp_path / "p.pkl")
    rot0, trans0 = load_pickle(fixtures_dir / pose_ref)
    np.testing.assert_allclose(rot, rot0, atol=1e-5)
    np.testing.assert_allclose(trans, trans0, atol=1e-5)
    if ctf_ref:
        assert cli(["parse-ctf", str(fixtures_dir / src), "-o", str(tmp_path / "c.pkl")]) == 0
        np.testing.assert_allclose(load_ctf(tmp_path / "c.pkl"),
                                   load_pickle(fixtures_dir / ctf_ref), atol=1e-5)


def test_parse_ctf_relion30(tmp_path, fixtures_dir, capsys):
    out = tmp_path / "ctf.pkl"
    assert cli(["parse-ctf", str(fixtures_dir / PFCRT), "-D", "300", "--apix", "1.035",
                "-w", "0.1", "-o", str(out)]) == 0
    np.testing.assert_allclose(load_ctf(out), load_pickle(fixtures_dir / "relion/ctf1.pkl"),
                               atol=1e-5)
    # missing amplitude contrast: one clear line, exit 1, no output
    assert cli(["parse-ctf", str(fixtures_dir / PFCRT), "-D", "300", "-o",
                str(tmp_path / "x.pkl")]) == 1
    err = capsys.readouterr().err.strip()
    assert "PfCRT.star: missing CTF column rlnAmplitudeContrast (give -w)" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "x.pkl").exists()
    assert cli(["parse-poses", str(fixtures_dir / PFCRT), "-o", str(tmp_path / "y.pkl")]) == 1
    assert "box size unknown (no rlnImageSize, no stack to read it from): give -D" in \
        capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["ctf.pkl"]


def test_parse_poses_cs_without_alignments(tmp_path, fixtures_dir, capsys):
    arr = C.read_cs(fixtures_dir / CSFILE)
    C.write_cs(tmp_path / "na.cs", np.ascontiguousarray(
        arr[[n for n in arr.dtype.names if not n.startswith("alignments")]]))
    assert cli(["parse-poses", str(tmp_path / "na.cs"), "-o", str(tmp_path / "p.pkl")]) == 1
    err = capsys.readouterr().err
    assert "na.cs: no poses" in err and not (tmp_path / "p.pkl").exists()


def test_info(fixtures_dir, capsys, tmp_path):
    for f, text in [(PFCRT, "5 particles"), ("relion/relion31.mrcs", "5 images of 256"),
                    (CSFILE, "2019 particles"), ("relion/ctf1.pkl", "CTF parameters"),
                    ("cryodrgn_rundir/run/z.pkl", "zdim 2"), ("hand/hand-bp.mrc", "volume")]:
        assert cli(["info", str(fixtures_dir / f)]) == 0
        assert text in capsys.readouterr().out
    (tmp_path / "evil.pkl").write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    assert cli(["info", str(tmp_path / "evil.pkl")]) == 1
    assert "refusing to unpickle" in capsys.readouterr().err


def _band_limited_stack(path, rng, n=10, D=32, apix=1.2):
    imgs = rng.standard_normal((n, D, D)).astype(np.float32)
    write_mrc(path, imgs, apix=apix)
    return imgs


def test_downsample_keeps_fourier_coefficients(tmp_path, rng):
    imgs = _band_limited_stack(tmp_path / "in.mrcs", rng)
    assert cli(["downsample", str(tmp_path / "in.mrcs"), "-D", "20", "-o",
                str(tmp_path / "out.mrcs"), "-b", "3"]) == 0
    out, apix = read_mrc(tmp_path / "out.mrcs")
    assert out.shape == (10, 20, 20) and apix == pytest.approx(1.2 * 32 / 20)
    F_in = fft2_center(imgs.astype(np.float64))
    F_out = fft2_center(out.astype(np.float64))
    a = 16 - 10
    # every coefficient strictly inside the new box (|k| < 10; index 0 is the Nyquist row)
    inner_in = F_in[:, a + 1:a + 20, a + 1:a + 20]
    inner_out = F_out[:, 1:, 1:]
    scale = (20 / 32) ** 2
    np.testing.assert_allclose(inner_out, inner_in * scale, atol=1e-5 * np.abs(inner_in).max())
    # and the real-space mean (DC) is preserved
    np.testing.assert_allclose(out.mean(axis=(1, 2)), imgs.mean(axis=(1, 2)), atol=1e-5)


def test_downsample_star_keeps_columns(tmp_path, fixtures_dir):
    star = S.read_star(fixtures_dir / "relion/relion31.star")
    assert cli(["downsample", str(fixtures_dir / "relion/relion31.star"), "-D", "64", "-o",
                str(tmp_path / "sub" / "small.mrcs")]) == 0
    new = S.read_star(tmp_path / "sub" / "small.star")
    assert list(new.particles.columns) == list(star.particles.columns)
    assert new.particles["rlnImageName"].tolist() == [f"{i:06d}@small.mrcs" for i in range(1, 6)]
    assert new.optics["rlnImageSize"].tolist() == [64]
    assert new.optics["rlnImagePixelSize"].iloc[0] == pytest.approx(2.806 * 4)
    src = open_images(tmp_path / "sub" / "small.star")
    assert src.D == 64 and len(src) == 5
    # poses: the same rotations, shifts scaled to the new pixels; CTF defocus unchanged
    R0, s0 = S.star_poses(star)
    R1, s1 = S.star_poses(new)
    np.testing.assert_allclose(R1, R0, atol=1e-5)
    np.testing.assert_allclose(s1, s0 / 4, atol=1e-5)
    np.testing.assert_allclose(S.star_ctf(new)[:, 2:], S.star_ctf(star)[:, 2:], atol=1e-3)


def test_downsample_cs(tmp_path, fixtures_dir, rng):
    arr = C.read_cs(fixtures_dir / CSFILE)[:4].copy()
    write_mrc(tmp_path / "stk.mrc", rng.standard_normal((4, 16, 16)), apix=2.0)
    arr["blob/path"], arr["blob/idx"], arr["blob/shape"] = b"J9/stk.mrc", [3, 2, 1, 0], 16
    arr["blob/psize_A"] = arr["alignments3D/psize_A"] = 2.0
    C.write_cs(tmp_path / "in.cs", arr)
    assert cli(["downsample", str(tmp_path / "in.cs"), "-D", "8", "-o",
                str(tmp_path / "o" / "ds.mrcs")]) == 0
    new = C.read_cs(tmp_path / "o" / "ds.cs")
    assert new["blob/path"][0] == b"ds.mrcs" and new["blob/idx"].tolist() == [0, 1, 2, 3]
    assert new["blob/psize_A"][0] == pytest.approx(4.0)
    np.testing.assert_allclose(C.cs_poses(new)[1], C.cs_poses(arr)[1] / 2, atol=1e-5)
    small = open_images(tmp_path / "o" / "ds.cs")[:]
    big = open_images(tmp_path / "in.cs")[:]
    np.testing.assert_allclose(small.mean(axis=(1, 2)), big.mean(axis=(1, 2)), atol=1e-5)


def test_downsample_relion30_star(tmp_path, fixtures_dir, rng):
    star = S.read_star(fixtures_dir / PFCRT)
    star.particles["rlnImageName"] = [f"{i:06d}@stk.mrcs" for i in range(1, 6)]
    S.write_star(tmp_path / "in.star", star)
    write_mrc(tmp_path / "stk.mrcs", rng.standard_normal((5, 30, 30)), apix=1.035)
    assert cli(["downsample", str(tmp_path / "in.star"), "-D", "10", "-o",
                str(tmp_path / "ds.mrcs")]) == 0
    new = S.read_star(tmp_path / "ds.star")
    assert new.optics is None and list(new.particles.columns) == list(star.particles.columns)
    np.testing.assert_allclose(S.star_apix(new), 1.035 * 3, rtol=1e-6)
    np.testing.assert_allclose(S.star_poses(new)[1], S.star_poses(star)[1] / 3, atol=1e-5)
    assert read_mrc(tmp_path / "ds.mrcs")[1] == pytest.approx(1.035 * 3, rel=1e-5)
    # no rlnImageSize: parse-poses/parse-ctf read the box from the first stack
    assert cli(["parse-poses", str(tmp_path / "in.star"), "-o", str(tmp_path / "p.pkl")]) == 0
    _, trans = load_pickle(tmp_path / "p.pkl")
    np.testing.assert_allclose(trans, star.particles[["rlnOriginX", "rlnOriginY"]] / 30,
                               atol=1e-6)
    assert cli(["parse-ctf", str(tmp_path / "ds.star"), "-w", "0.1", "-o",
                str(tmp_path / "c.pkl")]) == 0
    np.testing.assert_allclose(load_ctf(tmp_path / "c.pkl")[:, :2], [[10, 1.035 * 3]] * 5,
                               rtol=1e-6)


def test_info_run_folder(fixtures_dir, capsys):
    assert cli(["info", str(fixtures_dir / "cryodrgn_rundir/run")]) == 0
    out = capsys.readouterr().out
    assert "3 epoch(s)" in out and "zdim 2" in out and "box 64" in out


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_downsample_errors_leave_nothing(tmp_path, rng, capsys):
    imgs = rng.standard_normal((6, 16, 16)).astype(np.float32)
    imgs[4, 0, 0] = np.inf
    write_mrc(tmp_path / "bad.mrcs", imgs)
    assert cli(["downsample", str(tmp_path / "bad.mrcs"), "-D", "8", "-o",
                str(tmp_path / "out" / "o.mrcs"), "-b", "2"]) == 1
    assert "bad.mrcs: image 5" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
    assert cli(["downsample", str(tmp_path / "bad.mrcs"), "-D", "32", "-o",
                str(tmp_path / "o.mrcs")]) == 1
    assert "larger than" in capsys.readouterr().err
    (tmp_path / "trunc.mrcs").write_bytes((tmp_path / "bad.mrcs").read_bytes()[:-10])
    assert cli(["downsample", str(tmp_path / "trunc.mrcs"), "-D", "8", "-o",
                str(tmp_path / "o.mrcs")]) == 1
    assert "trunc.mrcs: truncated MRC file" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) in (["bad.mrcs", "trunc.mrcs"],
                                            ["bad.mrcs", "out", "trunc.mrcs"])


def test_info_demo_folder_and_its_run(tmp_path, capsys):
    """A folder as `cryoscape demo` makes it (data/ and run-*/): the dataset and each run with
    its state, particles, dataset, last loss and time per epoch; a run's state follows
    status.json (a 'running' run whose process is gone is reported as stopped)."""
    import json
    import subprocess
    import sys

    from cryoscape.core.simulate.dataset import simulate
    from cryoscape.core.train import TrainConfig, train
    from cryoscape.core.train.rundir import read_metrics

    demo = tmp_path / "demo"
    data = simulate("discrete", 24, demo / "data", D=16, states=2, seed=0).path
    run = demo / "run-001"
    train(TrainConfig(particles=str(data / "particles.star"), zdim=1, num_epochs=2,
                      enc_dim=16, dec_dim=16, threads=1, seed=0), run, progress=False)
    rows = read_metrics(run / "metrics.jsonl")
    loss, per_epoch = rows[-1]["loss"], np.mean([r["time"] for r in rows])
    assert cli(["info", str(demo)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [
        "folder: 1 dataset file(s), 1 run(s)",
        "  data/particles.star: RELION star (version 30001): 24 particles, 1 optics group(s)",
        "  run-001/: finished: 2 of 2 epochs",
        "    2 epoch(s) saved [1, 2]; zdim 1, box 16, 16 A/px",
        f"    24 particles from {data / 'particles.star'}",
        f"    last loss {loss:.5g} (epoch 2); {per_epoch:.3g} s per epoch"]

    status = json.loads((run / "status.json").read_text())
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    gone = int(gone)
    me = os.getpid()
    for state, pid, says in [
            ("running", gone, (f"stopped unexpectedly after 2 of 2 epochs (status.json says "
                               f"running, but its process {gone} is gone; --resume continues)")),
            ("running", me, f"running: 2 of 2 epochs done (process {me}, updated {status['time']})"),
            ("paused", 0, "paused after 2 of 2 epochs (--resume continues)")]:
        (run / "status.json").write_text(json.dumps({**status, "state": state, "pid": pid}))
        assert cli(["info", str(run)]) == 0
        assert capsys.readouterr().out.splitlines()[1] == f"run folder: {says}"
    (tmp_path / "empty").mkdir()
    assert cli(["info", str(tmp_path / "empty")]) == 1
    assert "not a run folder, and holds no runs or particle files" in capsys.readouterr().err
