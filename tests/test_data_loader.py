"""The training input pipeline: lazy reading by DataLoader workers gives exactly the in-memory
batches, input errors in a worker stay one-line errors, workers end, --downsample on the fly
is the `cryoscape downsample` stack, and the run records the box it trained at."""
from __future__ import annotations

import json
import warnings

import mrcfile
import numpy as np
import pytest
import torch
import yaml
from cryoscape.core.errors import CryoscapeError, CryoscapeWarning, InputFileError
from cryoscape.core.io.cryodrgn import save_index
from cryoscape.core.io.downsample import downsample_particles, downsample_stack
from cryoscape.core.io.stack import open_images
from cryoscape.core.train import data as train_data
from cryoscape.core.train.data import TrainData, epoch_order


def _batches(n: int, size: int, seed: int = 3, epoch: int = 1) -> list[torch.Tensor]:
    order = epoch_order(n, seed, epoch)
    return [order[i:i + size] for i in range(0, n, size)]


@pytest.fixture
def tiny_files(tiny_data):
    return {"particles": str(tiny_data / "particles.mrcs"),
            "poses": str(tiny_data / "poses.pkl"), "ctf": str(tiny_data / "ctf.pkl")}


def test_workers_yield_exactly_the_in_memory_batches(tiny_files, tiny_data, tmp_path):
    ind = tmp_path / "ind.pkl"
    save_index(ind, np.arange(0, 600, 3))       # 200 particles, not in file order
    common = dict(tiny_files, ind=str(ind), tilt=str(tiny_data / "particles.mrcs"))
    memory = TrainData(**common)
    lazy = TrainData(**common, lazy=True)
    assert lazy.y is None and memory.norm == lazy.norm
    batches = _batches(memory.N, 24)           # the last batch has 8
    stream = lazy.stream(batches, workers=2)
    assert stream._it is not None               # really read by worker processes
    got = list(stream)
    here = list(lazy.stream(batches))           # read in this process
    want = list(memory.stream(batches))
    assert len(got) == len(here) == len(want) == len(batches)
    for g, h, w in zip(got, here, want):
        assert len(g) == 5 and g[3] is not None     # particles and their tilted pairs
        for a, b, c in zip(g, h, w):
            assert torch.equal(a, b)                # workers: bitwise the same computation
            # in memory the FFTs ran in chunks of 1024 images: the last bit may differ
            torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
    # the rows are those of the images asked for, in the batch's order
    idx = batches[2]
    torch.testing.assert_close(got[2][0], memory.y[idx], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got[2][0], memory.y[batches[3][:len(idx)]])
    assert torch.equal(got[2][1], memory.rot[idx]) and torch.equal(got[2][2], memory.ctf[idx])


def test_workers_end_when_the_stream_is_closed(tiny_files):
    import multiprocessing
    data = TrainData(**tiny_files, lazy=True)
    before = set(multiprocessing.active_children())
    stream = data.stream(_batches(data.N, 16), workers=2)
    next(stream)
    workers = [p for p in multiprocessing.active_children() if p not in before]
    assert len(workers) == 2
    stream.close()
    for p in workers:
        p.join(timeout=60)       # the event: each worker exits once its iterator is dropped
        assert not p.is_alive()


def test_an_image_error_in_a_worker_is_the_one_line_error(tmp_path):
    images = np.random.default_rng(0).normal(size=(20, 16, 16)).astype(np.float32)
    images[13, 4, 4] = np.nan
    stack = tmp_path / "bad.mrcs"
    with mrcfile.new(stack) as m, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)       # the NaN is the point
        m.set_data(images)
    data = TrainData(str(stack), need_poses=False, lazy=True, invert=False, norm=(0.0, 1.0))
    stream = data.stream([torch.tensor([0, 1, 2]), torch.tensor([12, 13])], workers=1)
    next(stream)
    with pytest.raises(CryoscapeError, match=r"bad\.mrcs: image 14 \(1-based; particle 13\) "
                                             "contains NaN") as e:
        next(stream)
    assert "Traceback" not in str(e.value)
    stream.close()


def test_default_workers(monkeypatch):
    monkeypatch.setattr(train_data.os, "sched_getaffinity", lambda _: set(range(16)),
                        raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert train_data.default_workers(lazy=False) == 0      # in memory: nothing to read
    assert train_data.default_workers(lazy=True) == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")             # 2 cores per training process
    assert train_data.default_workers(lazy=True) == 1
    monkeypatch.setattr(train_data.os, "sched_getaffinity", lambda _: {0}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert train_data.default_workers(lazy=True) == 0


def test_downsample_on_the_fly_is_the_downsampled_stack(tiny_files, tmp_path):
    small = tmp_path / "small.mrcs"
    apix = downsample_stack(open_images(tiny_files["particles"], lazy=True), 16, small,
                            progress=False)
    with warnings.catch_warnings():     # the 32 px CTF pickle rescaled to 16 px, as cryoDRGN
        warnings.simplefilter("ignore", CryoscapeWarning)
        written = TrainData(str(small), poses=tiny_files["poses"], ctf=tiny_files["ctf"])
    fly = TrainData(**tiny_files, downsample=16)
    lazy = TrainData(**tiny_files, downsample=16, lazy=True)
    assert (fly.D, written.D) == (16, 16)
    assert fly.apix == pytest.approx(apix) == pytest.approx(written.apix)
    assert fly.apix == pytest.approx(2 * TrainData(**tiny_files, lazy=True).apix)
    torch.testing.assert_close(fly.ctf, written.ctf)
    torch.testing.assert_close(fly.shifts, written.shifts)
    assert fly.norm == pytest.approx(written.norm, rel=1e-5)
    torch.testing.assert_close(fly.y, written.y, rtol=1e-4, atol=1e-5)
    idx = _batches(fly.N, 32)[0]
    torch.testing.assert_close(next(lazy.stream([idx], workers=1))[0], fly.y[idx],
                               rtol=1e-5, atol=1e-6)


def test_downsample_must_fit_the_box(tiny_files):
    with pytest.raises(CryoscapeError, match="at most the images' 32 px"):
        TrainData(**tiny_files, downsample=48)
    with pytest.raises(CryoscapeError, match="even box size"):
        from cryoscape.core.train import TrainConfig
        TrainConfig(particles="x.mrcs", downsample=15)


def test_run_trained_downsampled_records_its_box(tiny_files, tiny_settings, tmp_path):
    from cryoscape.core.run import Run
    from cryoscape.core.train import train
    ind = tmp_path / "ind.pkl"
    save_index(ind, np.arange(64))
    cfg = tiny_settings(**tiny_files, ind=str(ind), num_epochs=1, downsample=16, lazy=True,
                        workers=1, enc_dim=16, dec_dim=16, enc_layers=1, dec_layers=1)
    train(cfg, tmp_path / "run", progress=False)
    conf = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    full_apix = TrainData(**tiny_files, lazy=True).apix
    assert conf["lattice_args"]["D"] == 17 and conf["cryoscape"]["D"] == 16
    assert conf["cryoscape"]["apix"] == pytest.approx(2 * full_apix)
    assert conf["cryoscape"]["train_args"]["downsample"] == 16
    run = Run.open(tmp_path / "run")
    assert run.D == 16 and run.apix == pytest.approx(2 * full_apix)
    assert run.decode(run.latents()[:1]).shape == (1, 16, 16, 16)
    # its own (32 px) images serve the tools, Fourier-cropped as read: the training's z, and
    # the per-image fit of the training images (the run's own, or the file given)
    from cryoscape.core.analysis.fit import evaluate_images
    from cryoscape.core.io.particles import load_particles
    images = load_particles(tiny_files["particles"], poses=tiny_files["poses"],
                            ctf=tiny_files["ctf"], ind=str(ind), lazy=True)
    np.testing.assert_allclose(run.encode(images), run.latents(), atol=1e-4)
    own = evaluate_images(run)
    given = evaluate_images(run, tiny_files["particles"], poses=tiny_files["poses"],
                            ctf=tiny_files["ctf"], ind=str(ind))
    np.testing.assert_allclose(own.mse, given.mse, rtol=1e-5)
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert float(np.mean(own.mse)) == pytest.approx(last["mse"], rel=0.3)
    with pytest.raises(CryoscapeError, match="trained on 16 px"):
        run.encode(downsample_particles(images, 8))


def test_cli_says_when_cuda_is_absent(tiny_files, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from cryoscape.app.cli import main
    assert main(["train", tiny_files["particles"], "--poses", tiny_files["poses"],
                 "-o", str(tmp_path / "run"), "--device", "cuda:1", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda:1: no CUDA GPU here" in err[0]
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_a_star_over_many_stacks_opens_from_headers(tmp_path):
    """1,200 particles over 40 stacks named NNNNNN@path (and one name without '@'): the
    index split right, no image read (the stacks hold no data: sparse files)."""
    from cryoscape.core.io.particles import load_particles
    from cryoscape.core.io.star import make_star, write_star
    head = tmp_path / "head.mrcs"
    with mrcfile.new(head) as m:
        m.set_data(np.zeros((30, 8, 8), np.float32))
    header, size = head.read_bytes()[:1024], head.stat().st_size
    for f in range(40):
        with open(tmp_path / f"s{f:02d}.mrcs", "wb") as fh:
            fh.write(header)
            fh.truncate(size)       # no image bytes written
    names = [f"{i + 1:06d}@s{f:02d}.mrcs" for f in range(40) for i in range(30)]
    names[-1] = "s39.mrcs"           # no '@': the file's first image
    star = make_star(names, D=8, apix=2.0)
    write_star(tmp_path / "p.star", star)
    p = load_particles(tmp_path / "p.star", lazy=True)
    assert len(p.images) == 1200 and p.D == 8 and p.apix == 2.0
    src = p.images
    assert len(src.stacks) == 40
    np.testing.assert_array_equal(src.file_index, np.repeat(np.arange(40), 30))
    want = np.tile(np.arange(30), 40)
    want[-1] = 0
    np.testing.assert_array_equal(src.image_index, want)
    star.particles.loc[5, "rlnImageName"] = "x6@s00.mrcs"
    write_star(tmp_path / "bad.star", star)
    with pytest.raises(InputFileError, match="bad image name 'x6@s00.mrcs'"):
        load_particles(tmp_path / "bad.star", lazy=True)
