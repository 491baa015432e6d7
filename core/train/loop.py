"""The training loop: minibatches, Adam, checkpoints, resume, pause/stop, divergence.

`train(cfg, outdir)` trains a decoder (zdim 0, as cryoDRGN train_nn) or a VAE (as cryoDRGN
train_vae) with known poses, or with `pose_search` finds the poses as it trains (ab initio, see
core/train/abinit; pose.N.pkl after every epoch). After every epoch it writes weights.N.pkl, z.N.pkl (posterior
mean and log-variance of every image, computed in a pass in eval mode after the epoch, as
cryoDRGN), a metrics.jsonl row and checkpoint.pt; checkpoint.pt is also written every
`checkpoint_minutes` inside an epoch and when SIGTERM/SIGINT stops the run after the current
batch. `RUN/PAUSE` stops the run after the current epoch. `resume=True` continues from
checkpoint.pt exactly: the epoch's batch order is a function of seed and epoch, and the
generator states travel in the checkpoint. Started by torchrun (WORLD_SIZE > 1), the processes
train data-parallel (core/train/distributed) and rank 0 alone writes the run directory.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from cryoscape.core.analysis.posechanges import phase_text
from cryoscape.core.device import amp_dtype, native_bf16, needs_scaler, select_device
from cryoscape.core.errors import CryoscapeError, warn
from cryoscape.core.io.atomic import atomic_path
from cryoscape.core.models import build_model
from cryoscape.core.poses import tilt_rotation
from cryoscape.core.train import checkpoint as ckpt
from cryoscape.core.train import distributed
from cryoscape.core.train.config import TrainConfig
from cryoscape.core.train.data import TrainData, default_workers, epoch_order
from cryoscape.core.train.forward import encoder_input
from cryoscape.core.train.rundir import RunDir, file_record

STATUS_SECONDS = 2.0   # status.json is refreshed at most this often
RESUME_OVERRIDES = {"num_epochs", "threads", "checkpoint_minutes", "device", "lazy", "workers",
                    "amp", "compile", "particles", "poses", "ctf", "ind", "datadir", "tilt"}


class TrainingDiverged(CryoscapeError):
    """The loss became NaN/inf or exploded; the last good checkpoint is kept."""


def set_threads(threads: int | None) -> int:
    """torch CPU threads: `threads`, or the cores available to this process shared among the
    training processes torchrun started on this node."""
    if not threads:
        threads = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse (no mmap'd blocks, no trimming of the heap).

    A training step allocates the same large activation buffers (tens of MB at D=128) every
    time; by default glibc returns each to the OS when freed, and the next step faults it back
    in page by page: about 300,000 page faults and a fifth of the step time at D=128, 3x256.
    Called once the data are loaded (their temporaries go back to the OS), the peak memory of
    the steps is the same either way. Returns False where this is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4                 # mallopt parameters (malloc.h)
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


@contextlib.contextmanager
def stop_on_signals():
    """Within the block, SIGTERM/SIGINT set the returned event instead of killing."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in old:
        signal.signal(s, lambda *_: event.set())
    try:
        yield event
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def inputs_of(cfg: TrainConfig) -> list[dict]:
    return [dict(role=role, **file_record(p)) for role, p in
            (("particles", cfg.particles), ("poses", cfg.poses), ("ctf", cfg.ctf),
             ("ind", cfg.ind), ("tilt", cfg.tilt)) if p and Path(p).is_file()]


def load_data(cfg: TrainConfig, device, norm=None, progress=False) -> TrainData:
    known = not cfg.pose_search
    return TrainData(cfg.particles, poses=cfg.poses if known else None, ctf=cfg.ctf, ind=cfg.ind,
                     datadir=cfg.datadir, lazy=cfg.lazy, invert=cfg.invert_data,
                     window=cfg.window, window_r=cfg.window_r, norm=norm or cfg.norm,
                     enc_radius=cfg.enc_mask, need_poses=known, use_poses=known, device=device,
                     progress=progress, tilt=cfg.tilt, downsample=cfg.downsample)


@torch.no_grad()
def encode_all(model, data: TrainData, batch_size: int = 256, centre=None,
               part: range | None = None, workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and log-variances of every image (or of the images `part`), in order,
    in eval mode; `centre(idx, y)` centres images whose shifts the data do not know (ab
    initio). A tilt-pair encoder sees each image with its tilted pair (`data.tilt_batch`).
    `workers`: DataLoader processes reading lazy data ahead (TrainData.stream)."""
    tilt = getattr(model, "tilt", False)
    if tilt and not data.has_tilt:
        raise CryoscapeError("the model was trained on tilt pairs: encoding needs each "
                             "image's tilted pair (give the tilt stack)")
    was_training = model.training
    model.eval()
    part = range(data.N) if part is None else part
    mus, logvars = [np.zeros((0, model.zdim), np.float32)], [np.zeros((0, model.zdim), np.float32)]
    batches = [torch.arange(i, min(i + batch_size, part.stop))
               for i in range(part.start, part.stop, batch_size)]
    stream = data.stream(batches, workers)
    try:
        for idx, (y, _, ctf, y_t, ctf_t) in zip(batches, stream):
            x_tilt = None
            if tilt:
                x_tilt = encoder_input(data.lattice, y_t if centre is None else centre(idx, y_t),
                                       ctf_t)
            if centre is not None:
                y = centre(idx, y)
            mu, logvar = model.encode(encoder_input(data.lattice, y, ctf), x_tilt)
            mus.append(mu.float().cpu().numpy())
            logvars.append(logvar.float().cpu().numpy())
    finally:
        stream.close()
    model.train(was_training)
    return np.concatenate(mus), np.concatenate(logvars)


def weight_average(model: torch.nn.Module, steps: float):
    """An exponential moving average of `model`'s weights over about `steps` optimiser steps
    (torch's AveragedModel; `update_parameters` after each step). Early on the average follows
    the weights closely (it keeps (1 + n) / (10 + n) of itself at its nth update, as
    TensorFlow's ExponentialMovingAverage with num_updates), so the random start fades within
    tens of steps."""
    keep = 1.0 - 1.0 / max(steps, 1.0)

    def average(avg: torch.Tensor, new: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return torch.lerp(avg, new, 1.0 - torch.clamp((1 + n) / (10 + n), max=keep))

    return torch.optim.swa_utils.AveragedModel(model, avg_fn=average, use_buffers=True)


class Trainer:
    """One run: data, model, optimiser and the resume state; `fit()` runs the epochs."""

    def __init__(self, cfg: TrainConfig | None, outdir, resume=False, callback=None,
                 progress=True, overrides=None):
        self.rd = RunDir(outdir)
        self.group = distributed.env_group()     # torchrun's processes; rank 0 writes the run
        self.main = self.group.main
        self.callback, self.progress = callback, progress and self.main
        norm = None                      # a resumed run keeps its image normalisation
        if resume:
            cfg, norm = self._resume_config(overrides or {})
        elif self.rd.checkpoint.exists() or self.rd.weights(1).exists():
            raise CryoscapeError(f"{outdir} already holds a run: continue it with --resume "
                                 "or choose another output folder")
        self.cfg = cfg
        self.threads = set_threads(cfg.threads)
        self.device = distributed.start(self.group, select_device(cfg.device), cfg)
        self.group.barrier()        # every rank has looked at RUN before rank 0 writes there
        self.amp = amp_dtype(self.device.type, cfg.amp, native_bf16(self.device))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=needs_scaler(self.amp))
        state = ckpt.load(self.rd.checkpoint) if resume else None
        self.data = load_data(cfg, self.device, norm, progress)
        self.workers = default_workers(cfg.lazy) if cfg.workers is None else cfg.workers
        if cfg.invert_data is None:   # as the data decided: recorded, and kept on --resume
            self.cfg = cfg = dataclasses.replace(cfg, invert_data=self.data.invert)
        if cfg.pose_search:     # imported here: core.posesearch itself imports core.train
            from cryoscape.core.train.abinit import AbInitio, auto_schedule
            self.cfg = cfg = auto_schedule(cfg, self.data.N)     # recorded, kept on --resume
        D = self.data.D
        torch.manual_seed(cfg.seed)
        self.model_args = cfg.model_args(D)
        try:
            self.model = build_model(self.model_args, D + 1, self.data.lattice.n_enc)
        except ValueError as e:  # settings the data's box cannot take (enc_mask, pe_dim)
            raise CryoscapeError(f"model settings: {e}") from None
        self.model.to(self.device)
        self.optim = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.wd)
        self.average = (weight_average(self.model, cfg.weight_average * self.batches_per_epoch)
                        if cfg.weight_average else None)
        self.noise = torch.Generator(self.device).manual_seed(cfg.seed + 1)
        self.tilt_rot = (torch.as_tensor(tilt_rotation(cfg.tilt_deg), device=self.device)
                         if cfg.tilt else None)
        self.abinit = None
        if cfg.pose_search:
            self.abinit = AbInitio(cfg, self.data, self.device, self.group)
        self.epoch, self.batch_i, self.elapsed, self.epoch_elapsed = 0, 0, 0.0, 0.0
        self.sums = torch.zeros(4, dtype=torch.float64)   # loss, mse, kl, images
        self.loss_mean = math.nan
        if state is not None:
            self._restore(state)
        elif self.main:
            self.rd.path.mkdir(parents=True, exist_ok=True)
            conf = self.rd.write_config(cfg, D, self.data.apix, self.data.norm, inputs_of(cfg),
                                        self.data.ctf is not None,
                                        self.data.shifts is not None or cfg.pose_search,
                                        world_size=self.group.world_size)
            self.rd.write_metrics([])
            self.rd.append_log(f"cryoscape {conf['version']}: {' '.join(cfg.command_line)}")
            advice = self.abinit and self.abinit.schedule_advice()
            if advice:
                self._warn(advice)
            self.rd.append_log(f"{self.data.N} images of {D} px"
                               + (" (Fourier-cropped as read)" if cfg.downsample else "")
                               + f", norm {self.data.norm}, "
                               f"{sum(p.numel() for p in self.model.parameters())} parameters, "
                               f"{self.threads} threads on {self.device}"
                               + (f" x {self.group.world_size} processes"
                                  if self.group.active else "")
                               + (f", {self.workers} reading workers"
                                  if cfg.lazy and self.workers else "")
                               + (f", {str(self.amp).removeprefix('torch.')} mixed precision"
                                  if self.amp else ""))
            self._save_resume_point()     # from now on --resume works, even after a kill
        if cfg.compile and self.device.type == "cuda":
            # in place, the modules run_batch calls (a torch.compile wrapper around the VAE
            # would compile only its unused forward); on CPU, inductor's code is slower
            for module in (self.model.encoder, self.model.decoder):
                if module is not None:
                    module.compile()
        self.batch_loss = distributed.wrap(self.model, self.data.lattice, self.group,
                                           self.device)

    def _resume_config(self, overrides: dict) -> tuple[TrainConfig, list]:
        """The saved settings (with `overrides` applied) and image normalisation."""
        if not self.rd.checkpoint.exists():
            raise CryoscapeError(f"{self.rd.path}: nothing to resume (no checkpoint.pt)")
        config = self.rd.read_config()
        saved = TrainConfig.from_dict(config["cryoscape"]["train_args"])
        bad = set(overrides) - RESUME_OVERRIDES
        if bad:
            raise CryoscapeError(f"--resume cannot change {', '.join(sorted(bad))}; "
                                 f"it may change {', '.join(sorted(RESUME_OVERRIDES))}")
        for name, value in overrides.items():
            if value is not None:
                setattr(saved, name, value)
        return saved, config["dataset_args"]["norm"]

    def _restore(self, s: dict) -> None:
        self.model.load_state_dict(s["model_state_dict"])
        self.optim.load_state_dict(s["optimizer_state_dict"])
        torch.set_rng_state(s["rng_torch"])
        self.noise.set_state(s["rng_noise"])
        self.epoch, self.batch_i = int(s["epoch"]), int(s["batch"])
        self.sums = s["sums"].clone()
        self.elapsed, self.epoch_elapsed = s["elapsed"], s["epoch_elapsed"]
        self.loss_mean = s["loss_mean"]
        if self.abinit is not None:
            self.abinit.load_state_dict(s["abinit"])
        if "scaler" in s and self.scaler.is_enabled():
            self.scaler.load_state_dict(s["scaler"])
        if self.average is not None and "average" in s:   # else (a run from before averaging)
            self.average.load_state_dict(s["average"])     # its first update copies the weights
        if self.main:
            self.rd.remove_partial_files()
            self.rd.write_metrics([r for r in self.rd.read_metrics()
                                   if r["epoch"] <= self.epoch])
            self.rd.append_log(f"resumed at epoch {self.epoch + 1}, batch {self.batch_i}"
                               + (f" on {self.group.world_size} processes"
                                  if self.group.active else ""))

    def _save_resume_point(self) -> None:
        state = ckpt.resume_dict(
            self.model, self.optim, epoch=self.epoch, batch=self.batch_i, noise=self.noise,
            sums=self.sums, elapsed=self.elapsed, epoch_elapsed=self.epoch_elapsed,
            loss_mean=self.loss_mean)
        if self.abinit is not None:
            state["abinit"] = self.abinit.state_dict()
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        if self.average is not None:
            state["average"] = self.average.state_dict()
        if self.main:
            ckpt.save(self.rd.checkpoint, state)

    def _status(self, state: str, **info) -> None:
        if self.main:
            self.rd.write_status(state, epoch=self.epoch, batch=self.batch_i,
                                 num_epochs=self.cfg.num_epochs, **info)

    def _check(self, loss: float) -> None:
        cfg = self.cfg
        bad = not math.isfinite(loss)
        if not bad and math.isfinite(self.loss_mean) and loss > cfg.max_loss_ratio * self.loss_mean:
            bad = True
        if not bad:
            self.loss_mean = loss if not math.isfinite(self.loss_mean) else \
                0.95 * self.loss_mean + 0.05 * loss
            return
        where = f"epoch {self.epoch + 1}, batch {self.batch_i + 1}"
        kept = "none yet" if not self.rd.checkpoint.exists() else str(self.rd.checkpoint)
        what = (f"is {loss}" if not math.isfinite(loss) else
                f"jumped to {loss:.4g} (running mean {self.loss_mean:.4g})")
        msg = (f"training stopped: the loss {what} at {where}; the last good checkpoint is "
               f"kept ({kept}). Lower --lr or check the inputs, then continue with --resume.")
        self._status("failed", message=msg)
        if self.main:
            self.rd.append_log(msg)
        raise TrainingDiverged(msg)

    def _step(self, idx: torch.Tensor, batch: tuple | None = None) -> tuple[float, float, float]:
        """One optimiser step on the global batch `idx` (this rank's share of it on several
        processes; `batch`: the share's `data.fetch` tuple if already fetched); returns the
        global batch's mean loss, mse and kl."""
        n_batch = len(idx)
        idx, weight, first = self.group.share(idx)
        if self.group.active:
            self.noise.manual_seed(self.group.noise_seed(self.cfg.seed, self.epoch, self.batch_i))
        y, rot, ctf, y_t, ctf_t = batch or self.data.fetch(idx)
        if self.abinit is not None:
            y, rot, y_t = self.abinit.batch(idx, y, self.epoch, self.batch_i, y_t,
                                            within=(first, n_batch))
        tilt = None if y_t is None else (y_t, ctf_t, self.tilt_rot)
        z_ref = None if self.abinit is None else self.abinit.z_ref(idx, self.epoch)
        at = self.epoch + (self.batch_i + 1) / self.batches_per_epoch    # epochs done after
        self.optim.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            loss, mse, kl = self.batch_loss(y, rot, ctf, self.cfg.kl_weight_at(at), self.noise,
                                            tilt=tilt, z_ref=z_ref)
        value, mse, kl = loss.detach().item(), mse.detach().item(), kl.detach().item()
        if self.group.active:     # the global batch's means, the same on every rank
            n = float(len(idx)) if weight else 0.0     # images of this rank's share
            s = self.group.all_sum(torch.tensor([value * n, mse * n, kl * n, n],
                                                dtype=torch.float64))
            value, mse, kl = (float(v) / float(s[3]) for v in s[:3])
            loss = loss * weight
        self._check(value)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optim)
        grads = [p.grad.isfinite().all() for p in self.model.parameters() if p.grad is not None]
        if (grads and not self.scaler.is_enabled()      # fp16: the scaler skips the step
                and not bool(torch.stack(grads).all())):      # one device sync, not one each
            self._check(math.nan)
        for group in self.optim.param_groups:
            group["lr"] = self.cfg.lr_at(at)
        self.scaler.step(self.optim)
        self.scaler.update()
        if self.average is not None and (self.abinit is None
                                         or self.epoch >= self.abinit.search_end):
            self.average.update_parameters(self.model)
        if self.abinit is not None:
            self.abinit.step(self.epoch)
        return value, mse, kl

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.data.N / self.cfg.batch_size)

    @property
    def saved_model(self) -> torch.nn.Module:
        """The model whose weights and latents an epoch saves: the weight average once it has
        begun. With pose search it begins after the search epochs: until then the poses (and
        with classes the maps' frames) change, and an average would blend decoders of
        different poses."""
        averaged = self.average is not None and int(self.average.n_averaged) > 0
        return self.average.module if averaged else self.model

    def _end_epoch(self) -> dict:
        e = self.epoch + 1
        if self.abinit is not None:
            self.abinit.sync(self.epoch)
        if self.model.zdim:       # on several processes: each encodes a part, rank 0 saves
            mu, logvar = encode_all(self.saved_model, self.data,
                                    centre=self.abinit.centre if self.abinit else None,
                                    part=self.group.part(self.data.N), workers=self.workers)
            mu, logvar = (self.group.gather_rows(torch.from_numpy(a), self.data.N).numpy()
                          for a in (mu, logvar))
            if self.main:
                ckpt.save_latents(self.rd.z(e), mu, logvar)
        if self.abinit is not None and self.main:
            self.abinit.save(self.rd.pose(e))
        if self.main:
            ckpt.save(self.rd.weights(e),
                      ckpt.weights_dict(self.saved_model, self.optim, e, self.model_args))
        s = self.sums
        n = max(float(s[3]), 1.0)
        row = {"epoch": e, "step": e * self.batches_per_epoch,
               "loss": float(s[0]) / n, "mse": float(s[1]) / n, "kl": float(s[2]) / n,
               "beta": self.cfg.kl_weight_at(e), "lr": self.optim.param_groups[0]["lr"],
               "time": self.epoch_elapsed,
               "images_per_s": self.data.N / max(self.epoch_elapsed, 1e-9),
               "elapsed": self.elapsed}
        advice = None
        if self.abinit is not None:
            summary = self.abinit.epoch_summary(self.epoch)
            row.update(poses=self.abinit.phase(self.epoch), **summary)
            advice = self.abinit.settle_advice(self.epoch, summary)
        if self.main:
            self._write_epoch(row)
            if advice:
                self._warn(advice)
        self.epoch, self.batch_i, self.epoch_elapsed = e, 0, 0.0
        self.sums = torch.zeros(4, dtype=torch.float64)
        self._save_resume_point()
        return row

    def _warn(self, message: str) -> None:
        """A warning on stderr and in run.log."""
        warn(message)
        self.rd.append_log(f"warning: {message}")

    def _write_epoch(self, row: dict) -> None:
        e = row["epoch"]
        self.rd.write_metrics(self.rd.read_metrics() + [row])
        self.rd.append_log(f"epoch {e}: loss {row['loss']:.6g} mse {row['mse']:.6g} "
                           f"kl {row['kl']:.4g} in {row['time']:.1f} s "
                           f"({row['images_per_s']:.0f} images/s)"
                           + (f", poses: {phase_text(row)}" if "poses" in row else ""))

    def _finish(self) -> None:
        """Final unnumbered weights.pkl, z.pkl and pose.pkl, as cryoDRGN leaves them."""
        if not self.main:
            return
        e = self.epoch
        ckpt.save(self.rd.weights(),
                  ckpt.weights_dict(self.saved_model, self.optim, e, self.model_args))
        last = [(self.rd.z(e), self.rd.z())] if self.model.zdim else []
        if self.abinit is not None:
            last.append((self.rd.pose(e), self.rd.pose()))
        for src, dst in last:      # the last epoch's latents and poses, from the same weights
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)

    def fit(self) -> dict:
        """Train to `num_epochs`; returns dict(state=done|paused|stopped, epoch, batch)."""
        cfg, N, B = self.cfg, self.data.N, self.cfg.batch_size
        nb = self.batches_per_epoch
        if self.main and self.rd.pause.exists():
            self.rd.pause.unlink()
        self.model.train()
        keep_freed_memory()             # from here on, the steps reuse the same buffers
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=(cfg.num_epochs - self.epoch) * N - self.batch_i * B,
                       unit="img", dynamic_ncols=True, smoothing=0.1)
        last_ckpt = last_status = time.monotonic()
        result, batches = "done", None
        self._status("running")
        try:
            with stop_on_signals() as stop:
                while self.epoch < cfg.num_epochs:
                    order = epoch_order(N, cfg.seed, self.epoch)
                    if self.abinit is not None:
                        self.abinit.own(order, self.epoch)
                    batches = self.data.stream(     # this rank's shares, read ahead
                        [self.group.share(order[b * B:(b + 1) * B])[0]
                         for b in range(self.batch_i, nb)], self.workers)
                    while self.batch_i < nb:
                        t0 = time.perf_counter()
                        if self.abinit is not None:
                            self.abinit.prepare(self.model, order, self.epoch, self.batch_i)
                        idx = order[self.batch_i * B:(self.batch_i + 1) * B]
                        loss, mse, kl = self._step(idx, next(batches))
                        dt = time.perf_counter() - t0
                        self.sums += torch.tensor([loss * len(idx), mse * len(idx),
                                                   kl * len(idx), len(idx)], dtype=torch.float64)
                        self.batch_i += 1
                        self.elapsed += dt
                        self.epoch_elapsed += dt
                        if bar is not None:
                            bar.update(len(idx))
                            bar.set_postfix_str(f"epoch {self.epoch + 1}/{cfg.num_epochs} "
                                                f"loss {loss:.4g}", refresh=False)
                        if self.callback is not None:
                            self.callback("batch", self)
                        now = time.monotonic()
                        due = self.batch_i < nb and now - last_ckpt >= 60 * cfg.checkpoint_minutes
                        if self.group.active:  # rank 0's clock, any rank's signal
                            s = self.group.all_sum(torch.tensor(
                                [float(stop.is_set()), float(due and self.main)],
                                dtype=torch.float64))
                            if s[0] > 0:
                                stop.set()
                            due = bool(s[1] > 0)
                        if stop.is_set() or due:
                            if self.abinit is not None:
                                self.abinit.sync(self.epoch)
                            self._save_resume_point()
                            last_ckpt = now
                            if stop.is_set():
                                result = "stopped"
                                break
                        if now - last_status >= STATUS_SECONDS:
                            self._status("running", loss=loss,
                                         images_per_s=len(idx) / max(dt, 1e-9))
                            last_status = now
                    batches.close()
                    if result == "stopped":
                        break
                    self._end_epoch()
                    last_ckpt = time.monotonic()
                    if self.callback is not None:
                        self.callback("epoch", self)
                    pause = self.group.any(self.main and self.rd.pause.exists())
                    if pause and self.epoch < cfg.num_epochs:
                        if self.main:
                            self.rd.pause.unlink()
                        result = "paused"
                        break
        finally:
            if batches is not None:
                batches.close()
            if bar is not None:
                bar.close()
        if result == "done":
            self._finish()
        self._status(result)
        if self.main:
            self.rd.append_log(f"{result} at epoch {self.epoch}, batch {self.batch_i}")
        return {"state": result, "epoch": self.epoch, "batch": self.batch_i}


def train(cfg: TrainConfig | None, outdir, *, resume: bool = False, callback=None,
          progress: bool = True, overrides: dict | None = None) -> dict:
    """Train a new run in `outdir` from `cfg`, or with `resume` continue the run there (its
    saved settings, changed only by `overrides`: epochs, threads, device, moved input paths).

    `callback(event, trainer)` is called after every batch ("batch") and epoch ("epoch").
    Returns dict(state, epoch, batch); raises TrainingDiverged on a NaN or exploding loss.
    """
    try:
        trainer = Trainer(cfg, outdir, resume=resume, callback=callback, progress=progress,
                          overrides=overrides)
        result = trainer.fit()
        trainer.group.barrier()   # leave together: a rank gone while rank 0 still writes its
        return result             # last files made gloo abort the others at teardown
    finally:
        distributed.close()
