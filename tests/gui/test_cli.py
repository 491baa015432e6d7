"""The scripted GUI commands as a user runs them: `cryoscape gui RUN --screenshot`,
`cryoscape gui RUN --movie`, `cryoscape movie` (each in its own process, under Xvfb)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.gui.conftest import surface_fraction, window_surface_fraction


def _cryoscape(*args, timeout=120):
    r = subprocess.run([sys.executable, "-m", "cryoscape.app.cli", *map(str, args)],
                       check=False, capture_output=True, text=True, timeout=timeout)
    return r


def test_gui_screenshot_command(cryodrgn_run, tmp_path):
    out = tmp_path / "fig.png"
    r = _cryoscape("gui", cryodrgn_run, "--screenshot", out, "--particle", 99,
                   "--threshold", 1.5)
    assert r.returncode == 0, r.stderr
    import imageio.v3 as iio
    img = iio.imread(out)
    assert img.shape[0] > 500 and img.shape[1] > 800 and window_surface_fraction(img) > 0.005


def test_gui_bad_particle_is_one_line_error(cryodrgn_run, tmp_path):
    r = _cryoscape("gui", cryodrgn_run, "--screenshot", tmp_path / "x.png", "--particle", 1000)
    assert r.returncode == 1
    assert "particles 0..99" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_movie_command(cryodrgn_run, tmp_path, suffix):
    out = tmp_path / f"path{suffix}"
    r = _cryoscape("movie", cryodrgn_run, "--path", 0, 99, "-n", 4, "--size", 160, "-o", out)
    assert r.returncode == 0, r.stderr
    import imageio.v3 as iio
    frames = iio.imread(out, index=None) if suffix == ".gif" else np.stack(
        list(iio.imiter(out, plugin="pyav") if _has_pyav() else _ffmpeg_frames(out)))
    assert len(frames) == 4 and frames.shape[1:3] == (160, 160)
    assert min(surface_fraction(f) for f in frames) > 0.01


def test_gui_movie_option(cryodrgn_run, tmp_path):
    out = tmp_path / "path.gif"
    r = _cryoscape("gui", cryodrgn_run, "--movie", out, "--path", 0, 50, 99, "-n", 3)
    assert r.returncode == 0, r.stderr
    import imageio.v3 as iio
    frames = iio.imread(out, index=None)
    assert len(frames) == 3 and min(surface_fraction(f) for f in frames) > 0.01
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 1     # the frames differ


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
        return True
    except ImportError:
        return False


def _ffmpeg_frames(path):
    import imageio.v2 as imageio
    with imageio.get_reader(path, format="FFMPEG") as r:
        return [np.asarray(f) for f in r]


def test_demo_shows_first_epoch(tmp_path):
    """The demo trains from the .star it simulated, into a numbered run folder it names, and
    shows the first structure without a click."""
    import yaml

    r = _cryoscape("demo", "-o", tmp_path, "-n", 200, "--epochs", 2,
                   "--exit-after-first-epoch", timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"simulating 200 images (discrete, D=32) into {tmp_path / 'data'}" in r.stdout
    assert f"training into {tmp_path / 'run-001'}" in r.stdout
    assert "first epoch's latents on screen after" in r.stdout
    assert "its first structure after" in r.stdout
    assert sorted(p.name for p in tmp_path.glob("run-*")) == ["run-001"]
    run = tmp_path / "run-001"
    assert (run / "weights.1.pkl").exists()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["dataset_args"]["particles"] == str(tmp_path / "data" / "particles.star")
    assert config["dataset_args"]["invert_data"] is False     # protein-white, found from data


def test_demo_numbers_its_runs(tmp_path):
    from cryoscape.app.gui.launch import next_run_dir

    assert next_run_dir(tmp_path) == tmp_path / "run-001"
    for name in ("run-001", "run-002", "run-20240101-120000", "other"):
        (tmp_path / name).mkdir()
    assert next_run_dir(tmp_path) == tmp_path / "run-003"
