"""Data-parallel training on torch.distributed, one process per GPU (NCCL) or CPU socket (gloo).

torchrun starts the processes and sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous
(MASTER_ADDR/PORT); with WORLD_SIZE > 1 the Trainer joins the process group and wraps the model
in DistributedDataParallel. Every process loads the whole data set and walks the same epoch
order (a function of seed and epoch); each global batch of `batch_size` images is split in
`world_size` contiguous shares, one per rank, so the effective batch and the learning rate are
those of one process with the same `--batch-size` (which must divide by the number of
processes). Gradients are averaged by DDP with each share's loss weighted by its size, so a
global step is the one-process step up to the order of floating-point sums. Batch losses and
stop/save/pause decisions are all-reduced, so every rank takes the same path; latents are
encoded by shares and gathered to rank 0, which alone writes the run directory. A checkpoint
holds the global state (epoch, global batch index, model, optimiser), so a run resumes with
any number of processes. A VAE's sampling noise is drawn per rank, seeded by (seed, epoch,
batch, rank). Ab initio (core/train/abinit): each rank searches its share of a chunk and the
poses found are gathered (every rank keeps the whole pose table); each rank refines the pose
corrections of the images it trains, and the rows (with their Adam moments) are gathered from
the ranks that own them at every checkpoint and epoch end. A rank that fails or disappears
makes the others' next collective fail (peer closed, or after `CRYOSCAPE_DIST_TIMEOUT`
seconds, default 1800): they stop with a CryoscapeError instead of waiting forever.
"""
from __future__ import annotations

import contextlib
import datetime
import itertools
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.train.forward import run_batch

TIMEOUT_ENV, TIMEOUT_DEFAULT = "CRYOSCAPE_DIST_TIMEOUT", 1800.0
_joined = []        # the process group `start` created (a caller's own group is left alone)


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes (world_size 1: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, idx: torch.Tensor) -> tuple[torch.Tensor, float, int]:
        """This rank's contiguous share of a global batch, the weight of its mean loss (share
        size x world_size / batch size: DDP's average of the ranks' gradients is then the
        gradient of the global batch's mean) and its first position in the batch. An empty
        share (a last batch smaller than the world) computes one image with weight 0, as DDP
        needs every rank's backward."""
        if not self.active:
            return idx, 1.0, 0
        part = self.part(len(idx))
        if not part:
            return idx[:1], 0.0, 0
        return idx[part.start:part.stop], len(part) * self.world_size / len(idx), part.start

    def parts(self, n: int) -> list[range]:
        """Every rank's contiguous part of n items (as torch.tensor_split cuts them)."""
        q, r = divmod(n, self.world_size)
        ends = np.cumsum([0] + [q + (k < r) for k in range(self.world_size)])
        return [range(int(a), int(b)) for a, b in itertools.pairwise(ends)]

    def part(self, n: int) -> range:
        """This rank's contiguous part of n items."""
        return self.parts(n)[self.rank]

    def owners(self, order: torch.Tensor, batch_size: int) -> torch.Tensor:
        """The rank that trains each image [N] in an epoch of this `order`."""
        n = len(order)
        by_position = torch.arange(n) % batch_size // (batch_size // self.world_size)
        last = (n - 1) // batch_size * batch_size          # the last batch may be smaller
        for r, p in enumerate(self.parts(n - last)):
            by_position[last + p.start:last + p.stop] = r
        owner = torch.empty(n, dtype=torch.long)
        owner[order] = by_position
        return owner

    def noise_seed(self, seed: int, epoch: int, batch: int) -> int:
        """The reparameterisation noise seed of a rank's share of a global batch: a function
        of (seed, epoch, batch, rank), so runs and resumes with the same world size repeat."""
        s = np.random.SeedSequence([seed, epoch, batch, self.rank, 1])
        return int(s.generate_state(1, dtype=np.uint64)[0] >> 1)

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over the ranks (a new tensor, on `values`' device)."""
        if not self.active:
            return values
        t = values.to(_comm_device(), copy=True)
        with peers_alive():
            dist.all_reduce(t)
        return t.to(values.device)

    def any(self, flag: bool) -> bool:
        """Whether `flag` holds on any rank."""
        return bool(self.all_sum(torch.tensor([float(flag)], dtype=torch.float64))[0] > 0)

    def gather_rows(self, rows: torch.Tensor, n: int) -> torch.Tensor:
        """Every rank's `part(n)` rows (CPU), in order, on every rank."""
        if not self.active:
            return rows
        size = -(-n // self.world_size)
        local = torch.zeros((size, *rows.shape[1:]), dtype=rows.dtype, device=_comm_device())
        local[:len(rows)] = rows
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        with peers_alive():
            dist.all_gather(parts, local)
        return torch.cat([p[:len(r)].cpu() for p, r in zip(parts, self.parts(n))])

    def barrier(self) -> None:
        if self.active:
            with peers_alive():
                dist.barrier()


def env_group() -> Group:
    """The group torchrun describes in the environment (none: one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Group(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def _comm_device() -> torch.device:
    return (torch.device("cuda", torch.cuda.current_device())
            if dist.get_backend() == "nccl" else torch.device("cpu"))


@contextlib.contextmanager
def peers_alive():
    """Turn a collective's failure (a peer died, stopped or timed out) into a clear error."""
    try:
        yield
    except (RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CryoscapeError(
            f"training stopped: another training process failed, was stopped or stopped "
            f"answering ({first[:200]}); see its message. The last checkpoint is kept: "
            "continue with --resume") from None


def start(group: Group, device: torch.device, cfg) -> torch.device:
    """Join the process group (gloo on CPU, NCCL on CUDA) and return this rank's device;
    refuses settings that do not run on several processes."""
    if not group.active:
        return device
    if cfg.batch_size % group.world_size:
        raise CryoscapeError(f"--batch-size {cfg.batch_size} is the global batch: it must be a "
                             f"multiple of the {group.world_size} processes")
    if device.type == "cuda":
        device = torch.device("cuda", group.local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = float(os.environ.get(TIMEOUT_ENV, TIMEOUT_DEFAULT))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                rank=group.rank, world_size=group.world_size,
                                timeout=datetime.timedelta(seconds=timeout))
        _joined.append(True)
    return device


def close() -> None:
    """Leave the process group `start` joined, if any."""
    if _joined and dist.is_initialized():
        dist.destroy_process_group()
    _joined.clear()


class BatchLoss(torch.nn.Module):
    """`run_batch` as a module's forward, so that DDP (which hooks forward) syncs its
    gradients; the model's own methods (encode, decode) stay callable on `model`."""

    def __init__(self, model, lattice):
        super().__init__()
        self.model, self.lattice = model, lattice

    def forward(self, y, rot, ctf, beta, noise, tilt=None, z_ref=None):
        return run_batch(self.model, self.lattice, y, rot, ctf, beta, noise, tilt=tilt,
                         z_ref=z_ref)


def wrap(model, lattice, group: Group, device: torch.device):
    """The module the training step calls: DDP around `BatchLoss` on several processes."""
    loss = BatchLoss(model, lattice)
    if not group.active:
        return loss
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(loss, device_ids=[device] if device.type == "cuda" else None)
