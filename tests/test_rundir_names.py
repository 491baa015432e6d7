"""A run directory's file names live in core/train/rundir.py: what RunDir writes, Run reads."""
from __future__ import annotations

import pickle
import shutil

import numpy as np
import torch
import yaml
from cryoscape.core.models import build_model
from cryoscape.core.run import Run
from cryoscape.core.train import checkpoint as ckpt
from cryoscape.core.train.rundir import RunDir, numbered_files


def test_run_reads_what_rundir_names(tmp_path):
    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    args = {"zdim": 1, "qlayers": 1, "qdim": 8, "players": 1, "pdim": 8, "enc_mask": 4}
    config = {"dataset_args": {"norm": [0.0, 1.0]}, "model_args": args,
              "lattice_args": {"D": 9, "extent": 0.5, "ignore_DC": True},
              "cryoscape": {"apix": 3.0}}
    rd.config.write_text(yaml.safe_dump(config))
    state = {"model_state_dict": build_model(args, 9).state_dict()}
    for e in (1, 2, None):
        torch.save(state, rd.weights(e))
    for e, value in ((1, 1.0), (2, 2.0), (None, 2.0)):
        ckpt.save_latents(rd.z(e), np.full((3, 1), value, np.float32), np.zeros((3, 1)))
    rows = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}]
    rd.write_metrics(rows)
    (rd.path / "weights.x.pkl").touch()                        # not an epoch's file
    assert sorted(numbered_files(rd.path, "weights")) == [1, 2]
    run = Run.open(rd.path)
    assert run.epochs == [1, 2] and run.metrics() == rows
    assert run.weights_path() == rd.weights() and run.weights_path(1) == rd.weights(1)
    assert run.z_path(2) == rd.z(2) and run.latents(1)[0, 0] == 1.0
    # an older cryoDRGN run keeps its config as a pickle
    old = RunDir(tmp_path / "old")
    shutil.copytree(rd.path, old.path)
    old.config.unlink()
    with open(old.config_pkl, "wb") as f:
        pickle.dump(config, f)
    assert Run.open(old.path).config_path == old.config_pkl
