"""The run directory: config.yaml with provenance, metrics.jsonl, status.json and file names.

Layout (shared with cryoDRGN so that `Run.open` reads both): `config.yaml`, `weights.N.pkl` and
`z.N.pkl` per epoch (1-based), final `weights.pkl` and `z.pkl`, plus cryoscape's own
`checkpoint.pt` (resume point, also mid-epoch), `metrics.jsonl`, `status.json` and `run.log`.
Every file is written atomically. These names are written here only: readers (core.run, the
explorer) take them from `RunDir` and `numbered_files`.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import yaml
from cryoscape.core import __version__
from cryoscape.core.io.atomic import atomic_open

FULL_HASH_LIMIT = 2 << 30  # bytes; larger files are hashed on their first and last 256 MiB
PART = 256 << 20


def numbered_files(folder: str | os.PathLike, kind: str) -> dict[int, Path]:
    """{N: path} of the per-epoch files `kind`.N.pkl ("weights", "z", "pose") in `folder`."""
    name = re.compile(rf"^{re.escape(kind)}\.(\d+)\.pkl$")
    return {int(m.group(1)): p for p in Path(folder).iterdir() if (m := name.match(p.name))}


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Rows of a metrics.jsonl ([] if there is none); a cut or malformed line is skipped."""
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows


def file_record(path: str | os.PathLike) -> dict:
    """{path, size, sha256} of an input file (head+tail digest above 2 GiB, marked so)."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= FULL_HASH_LIMIT:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
            return {"path": str(path.resolve()), "size": size, "sha256": h.hexdigest()}
        h.update(f.read(PART))
        f.seek(size - PART)
        h.update(f.read(PART))
    return {"path": str(path.resolve()), "size": size, "sha256_head_tail": h.hexdigest()}


class RunDir:
    """File names and small atomic writers of one run directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    config_pkl = property(lambda self: self.path / "config.pkl")   # older cryoDRGN runs
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    status = property(lambda self: self.path / "status.json")
    pause = property(lambda self: self.path / "PAUSE")
    log = property(lambda self: self.path / "run.log")

    def weights(self, epoch: int | None = None) -> Path:
        return self.path / ("weights.pkl" if epoch is None else f"weights.{epoch}.pkl")

    def z(self, epoch: int | None = None) -> Path:
        return self.path / ("z.pkl" if epoch is None else f"z.{epoch}.pkl")

    def pose(self, epoch: int | None = None) -> Path:
        """Poses found by an ab initio run (cryoDRGN's pose.N.pkl)."""
        return self.path / ("pose.pkl" if epoch is None else f"pose.{epoch}.pkl")

    def write_config(self, cfg, D: int, apix: float, norm, inputs: list[dict],
                     uses_ctf: bool, uses_shifts: bool, world_size: int = 1) -> dict:
        """Write config.yaml: cryoDRGN's sections plus a `cryoscape:` provenance section
        (with the training images' pixel size `apix` in A and whether CTF and translations,
        given or read from a .star/.cs, were used, and the number of training processes)."""
        conf = {
            "dataset_args": cfg.dataset_args(norm), "lattice_args": cfg.lattice_args(D),
            "model_args": cfg.model_args(D), "seed": cfg.seed, "version": __version__,
            "time": datetime.datetime.now().isoformat(timespec="seconds"),
            "cryoscape": {"version": __version__,
                          "command_line": list(cfg.command_line or sys.argv),
                          "inputs": inputs, "seed": cfg.seed, "D": D, "apix": float(apix),
                          "uses_ctf": bool(uses_ctf), "uses_shifts": bool(uses_shifts),
                          "world_size": int(world_size),
                          "train_args": {k: v for k, v in cfg.to_dict().items()
                                         if k != "command_line"}}}
        with atomic_open(self.config, "w") as f:
            yaml.safe_dump(conf, f, sort_keys=False)
        return conf

    def remove_partial_files(self) -> list[Path]:
        """Delete temporary files that a killed process left behind (never a real output)."""
        stale = list(self.path.glob(".*.part"))
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    def read_config(self) -> dict:
        with open(self.config) as f:
            return yaml.safe_load(f)

    def read_metrics(self) -> list[dict]:
        return read_metrics(self.metrics)

    def write_metrics(self, rows: list[dict]) -> None:
        """Rewrite metrics.jsonl with `rows` (atomic: a kill never leaves a half line)."""
        with atomic_open(self.metrics, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def write_status(self, state: str, **info) -> None:
        """status.json: state (running, paused, stopped, done, failed), epoch, step, message."""
        with atomic_open(self.status, "w") as f:
            json.dump(dict(state=state, pid=os.getpid(),
                           time=datetime.datetime.now().isoformat(timespec="seconds"), **info), f)

    def append_log(self, line: str) -> None:
        """One line in run.log (a plain log; a kill can cut its last line, nothing reads it)."""
        stamp = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")
        with open(self.log, "a") as f:
            f.write(f"{stamp} {line}\n")
