"""Ab initio training: poses searched over SO(3) x R^2 and refined with the decoder.

The schedule (epochs 1-based; each phase switchable in TrainConfig):
1. `pretrain_epochs` (paper: 1): random rotations, drawn anew for every batch, and no shifts;
   the decoder learns a rotational average of the structure, a start free of any bias.
2. `search_epochs`: the images of each chunk of `search_chunk` are searched (core/posesearch)
   with the decoder frozen for the chunk, then trained on with the poses found. A chunk, not a
   batch: decoding the volume is the search's cost, and it is shared by every image of the
   chunk.
3. the remaining epochs (`pose_sgd`): every image's pose is refined by gradient descent together
   with the decoder (CryoDRGN-AI's approach): a rotation correction exp([w]x) and a shift
   correction per particle, sparse Adam on the images of each batch.
Epochs left to the data (`auto_schedule`): the paper's 1 pretraining epoch and 4 search epochs
(8 with classes) for 3000 images or more, more where the images are fewer, so that the decoder
has seen as many images before it is searched against (with classes, each class's map as many
as one map needs); 20 epochs in all, or 10 refinement epochs after the search. Chosen once the
images are counted and written to config.yaml, so a resumed run keeps them.

Heterogeneous (zdim > 0), while poses are not yet known (pretraining and search), the latent
space holds `search_classes` fixed reference points (drawn from the prior, seeded) and each
image belongs to one of them, as in a 3D classification (RELION, cryoSPARC): the images start
in random classes, each image is searched against the volume of every class and joins the one
it fits best, and the decoder is trained at its class's point while the encoder learns to put
the image there (forward.run_batch's `z_ref`). Each class is reconstructed in a frame, hand
and position of its own, so at the end of the classes every class's map is superposed onto
the largest class's on their shared part (core/volalign) and its images' poses and shifts
follow; the refinement epochs then train the VAE as usual from there. Why: at the start the
encoder's z carries nothing, so a search at it is a search against one consensus volume, and
images of a conformation unlike the majority's never find their poses (on the
two-conformation benchmark the minority's stayed ~90 degrees off, and its z never separated).

On several processes (core/train/distributed) each rank searches its share of a chunk and
the poses found are gathered; each rank refines the corrections of the images it trains and
`sync` gathers their rows (and Adam moments) from their owners.

With tilt pairs (the paper's D.2) every particle's tilted image, posed at T @ R with the same
shift, counts in the search's score, the encoder's z and the loss.

`pose.N.pkl` (cryoDRGN's layout: rotations and shifts as a fraction of the box) holds every
image's pose after epoch N. Everything that a resume needs travels in `state_dict()`; random
rotations of the pretraining come from a generator seeded by (seed, epoch, batch), so a resumed
run draws the same ones.
"""
from __future__ import annotations

import dataclasses
import math
import pickle
import time

import numpy as np
import torch
from cryoscape.core.analysis.posechanges import pose_change_advice, pose_changes
from cryoscape.core.io.atomic import atomic_open
from cryoscape.core.poses import shifts_to_cryodrgn, tilt_rotation
from cryoscape.core.posesearch import PoseSearch, SearchConfig, TiltPairs
from cryoscape.core.train.config import EPOCHS
from cryoscape.core.train.distributed import Group
from cryoscape.core.train.forward import center_hartley, encoder_input
from cryoscape.core.volalign import moved_poses, moved_shifts, superpose_maps

PRETRAIN, SEARCH, REFINE = "pretrain", "search", "refine"
# images trained on before the refinement: a decoder that has seen fewer gives the search
# nothing to find poses against (measured, D=64, SNR 0.1: 3000 images align with 1 pretraining
# and 4 search epochs; 300 images with them stay 117 deg off, and with 10 and 40 epochs of 60
# reach 3.6 deg). With classes each class's map is trained on its own images only and needs
# as many (benchmarks/paper.py --quick, 1500 images in 2 classes: with 2 + 8 epochs circular
# motion ended 4.7 / 48 deg off at seeds 0 / 1, 10 discrete states 24 / 113; with 2 + 16:
# 4.6 / 4.6 and 6.9 / 110, the last search still failed)
PRETRAIN_IMAGES, SEARCH_IMAGES = 3000, 12000
SEARCH_EPOCHS = (4, 8)      # at least, homogeneous / heterogeneous (classes form first)
REFINE_EPOCHS = 10          # at least, after the search


def auto_schedule(cfg, n: int):
    """`cfg` with the pose search's epochs it leaves to the data (None) chosen for n images:
    enough pretraining for `PRETRAIN_IMAGES` images and search for `SEARCH_IMAGES` per
    class, and `REFINE_EPOCHS` after them; the defaults for 3000 images or more."""
    pre = cfg.pretrain_epochs
    if pre is None:
        pre = max(1, math.ceil(PRETRAIN_IMAGES / n))
    search = cfg.search_epochs
    if search is None:
        classes = cfg.search_classes if cfg.zdim else 1
        search = max(SEARCH_EPOCHS[bool(cfg.zdim)], math.ceil(SEARCH_IMAGES * classes / n))
    epochs = cfg.num_epochs
    if epochs is None:
        epochs = max(EPOCHS, pre + search + REFINE_EPOCHS)
    return dataclasses.replace(cfg, pretrain_epochs=pre, search_epochs=search,
                               num_epochs=epochs)


def schedule_advice(cfg, n: int) -> str | None:
    """A warning where a scheduled `cfg`'s epochs, as given, are too few for n images (see
    `auto_schedule`), or end before the search does; None where they suffice."""
    auto = auto_schedule(dataclasses.replace(cfg, pretrain_epochs=None, search_epochs=None,
                                             num_epochs=None), n)
    pre, search = cfg.pretrain_epochs, cfg.search_epochs
    if pre < auto.pretrain_epochs or search < auto.search_epochs:
        per_class = " per class" if cfg.zdim else ""
        return (f"only {n} images: {pre} pretraining and {search} search epochs may train the "
                f"decoder too little for the search to find poses (at D=64, SNR 0.1 it took "
                f"~{PRETRAIN_IMAGES} and ~{SEARCH_IMAGES} images{per_class}); if the poses do "
                f"not settle, leave the epochs to the defaults (--pretrain-epochs "
                f"{auto.pretrain_epochs} --search-epochs {auto.search_epochs} -n "
                f"{auto.num_epochs})")
    if cfg.num_epochs < pre + search:
        return (f"-n {cfg.num_epochs} ends before the pose search does ({pre} pretraining and "
                f"{search} search epochs): the poses will not be refined")
    return None


def skew_exp(w: torch.Tensor) -> torch.Tensor:
    """Rotation matrices exp([w]x) [..., 3, 3] of axis-angle vectors w [..., 3] (differentiable,
    exact at w = 0)."""
    k = torch.zeros(*w.shape[:-1], 3, 3, dtype=w.dtype, device=w.device)
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -w[..., 2], w[..., 1], -w[..., 0]
    k = k - k.transpose(-1, -2)
    return torch.linalg.matrix_exp(k)


def random_rotations(n: int, generator: torch.Generator) -> torch.Tensor:
    """n rotations [n, 3, 3] uniform on SO(3) (normalised Gaussian quaternions)."""
    q = torch.randn(n, 4, generator=generator)
    w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
                       1).reshape(n, 3, 3)


class AbInitio:
    """The poses of a training set while they are searched and refined (see the module)."""

    def __init__(self, cfg, data, device, group: Group | None = None):
        self.cfg, self.data, self.device = cfg, data, torch.device(device)
        self.group = group or Group()      # the training processes (core/train/distributed)
        self.owner = None                  # on several: the rank training each image
        self.N, self.D = data.N, data.D
        lat = data.lattice
        self.freqs = lat.full_coords[lat.keep]                # for centring kept points
        self.rot = torch.eye(3).repeat(self.N, 1, 1)          # the poses found, on the CPU
        self.shift = torch.zeros(self.N, 2)
        self._searches: dict[int, PoseSearch] = {}
        # per-particle corrections (axis-angle, shift px), used in the refinement epochs
        self.delta = torch.nn.Embedding(self.N, 5, sparse=True).to(self.device)
        torch.nn.init.zeros_(self.delta.weight)
        self.optim = torch.optim.SparseAdam(self.delta.parameters(), lr=cfg.pose_lr)
        self.tilt_rot = torch.as_tensor(tilt_rotation(cfg.tilt_deg)) if data.has_tilt else None
        self.refs = self.ref = None       # heterogeneous: the classes' points, each image's class
        self.frames = None                # how _superpose_classes moved each class
        self.last = None                  # (rot, shift, class) after the epoch before, if posed
        if cfg.zdim:
            g = torch.Generator().manual_seed(cfg.seed)
            self.refs = torch.randn(cfg.search_classes, cfg.zdim, generator=g)
            self.ref = torch.randint(cfg.search_classes, (self.N,), generator=g)
        self.search_seconds, self.searched_images = 0.0, 0

    @property
    def search_end(self) -> int:
        """The first 0-based epoch after the pretraining and search epochs."""
        return self.cfg.pretrain_epochs + self.cfg.search_epochs

    def phase(self, epoch: int) -> str:
        """The phase of a 0-based epoch."""
        if epoch < self.cfg.pretrain_epochs:
            return PRETRAIN
        if epoch < self.search_end or not self.cfg.pose_sgd:
            return SEARCH
        return REFINE

    def classifying(self, epoch: int) -> bool:
        """Whether a heterogeneous run's images belong to classes in this 0-based epoch (the
        pretraining and the search epochs: see the module)."""
        return self.refs is not None and epoch < self.search_end

    def band(self, epoch: int) -> int:
        """The search's band limit (px) in a 0-based search epoch: from D/4 in the first to
        D/2 in the last, low resolution first while the decoder is still coarse."""
        j = min(epoch - self.cfg.pretrain_epochs, self.cfg.search_epochs - 1)
        f = j / (self.cfg.search_epochs - 1) if self.cfg.search_epochs > 1 else 1.0
        return round(self.D / 4 + f * (self.D / 2 - self.D / 4))

    def search(self, epoch: int) -> PoseSearch:
        k = self.band(epoch)
        if k not in self._searches:
            self._searches[k] = PoseSearch(self.data.lattice,
                                           SearchConfig(kmax=k, **self.cfg.search_args()),
                                           self.device)
        return self._searches[k]

    def chunk_batches(self) -> int:
        return max(1, -(-self.cfg.search_chunk // self.cfg.batch_size))

    @torch.no_grad()
    def prepare(self, model, order: torch.Tensor, epoch: int, batch_i: int) -> None:
        """Before batch `batch_i` of `epoch`: search the poses of the chunk it starts, if any;
        at the start of the first epoch after the classes, superpose them."""
        if batch_i == 0 and self.refs is not None and epoch == self.search_end:
            self._superpose_classes(model)
        if self.phase(epoch) != SEARCH or batch_i % self.chunk_batches():
            return
        B = self.cfg.batch_size
        chunk = order[batch_i * B:(batch_i + self.chunk_batches()) * B]
        part = self.group.part(len(chunk))        # this rank's share of the search
        idx = chunk[part.start:part.stop]
        if len(idx):
            self._search(model, idx, epoch)
        if self.group.active:                     # every rank keeps the whole pose table
            found = [self.rot[idx].reshape(-1, 9), self.shift[idx]]
            if self.ref is not None:
                found.append(self.ref[idx, None].float())
            found = self.group.gather_rows(torch.cat(found, 1), len(chunk))
            self.rot[chunk], self.shift[chunk] = found[:, :9].reshape(-1, 3, 3), found[:, 9:11]
            if self.ref is not None:
                self.ref[chunk] = found[:, 11].round().long()

    def _search(self, model, idx: torch.Tensor, epoch: int) -> None:
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        y, _, ctf = self.data.batch(idx)        # the search bounds its memory by chunking
        tilt = None
        if self.tilt_rot is not None:
            tilt = TiltPairs(*self.data.tilt_batch(idx), self.tilt_rot)
        refs = self.refs
        if model.zdim and not self.classifying(epoch):
            refs = self._centres(model, idx, y, ctf, tilt)
        found = self.search(epoch).search_model(model, y, ctf, refs, tilt=tilt)
        self.rot[idx] = found.rot.float().cpu()
        self.shift[idx] = found.shift.float().cpu()
        if self.classifying(epoch):
            self.ref[idx] = found.ref
        model.train(was_training)
        self.search_seconds += time.perf_counter() - t0
        self.searched_images += len(idx)

    def _superpose_classes(self, model) -> None:
        """Every class's map (decoded at its point) superposed on the largest class's on
        their shared part, and its images' poses and shifts moved with it (core/volalign):
        each class was reconstructed in a frame, hand and position of its own. With tilt
        pairs the data fix the hand: rotations and offsets only."""
        from cryoscape.core.decode import decode_volumes
        counts = torch.bincount(self.ref, minlength=len(self.refs))
        order = [int(j) for j in counts.argsort(descending=True) if counts[j]]
        was_training = model.training
        model.eval()

        def volume(j):
            return decode_volumes(model.decoder, self.refs[j][None], self.D)[0]

        ref = volume(order[0])
        self.frames = []
        for j in order[1:]:
            Q, mirrored, p, corr = superpose_maps(ref, volume(j), self.D // 4,
                                                  hands=self.tilt_rot is None)
            mine = self.ref == j
            for rot, shift in [(self.rot, self.shift)] + ([self.last[:2]] if self.last else []):
                shift[mine] = moved_shifts(rot[mine], shift[mine], p)
                rot[mine] = moved_poses(rot[mine], Q, mirrored)
            self.frames.append({"class": j, "onto": order[0], "mirrored": mirrored,
                                "offset_px": [round(float(x), 2) for x in p],
                                "correlation": round(corr, 4)})
        model.train(was_training)

    def _centres(self, model, idx, y, ctf, tilt) -> torch.Tensor:
        """After the classes: `search_classes` k-means centres of the images' posterior mean z
        (each image centred by its last shift), the reference points of a later search."""
        from cryoscape.core.analysis.sampling import kmeans
        lat, shift = self.data.lattice, self.shift[idx].to(y.device)
        x_tilt = None if tilt is None else encoder_input(
            lat, center_hartley(tilt.y, self.freqs, shift), tilt.ctf)
        z = model.encode(encoder_input(lat, center_hartley(y, self.freqs, shift), ctf),
                         x_tilt)[0].float().cpu().numpy()
        k = min(len(z), self.cfg.search_classes)
        return torch.as_tensor(kmeans(z, k, seed=0, n_init=1).centers, dtype=torch.float32)

    def schedule_advice(self) -> str | None:
        """`schedule_advice` for this run's images."""
        return schedule_advice(self.cfg, self.N)

    def z_ref(self, idx: torch.Tensor, epoch: int) -> torch.Tensor | None:
        """The class points of a batch's images while classifying (run_batch's z_ref)."""
        return self.refs[self.ref[idx.cpu()]].to(self.device) if self.classifying(epoch) \
            else None

    def batch(self, idx: torch.Tensor, y: torch.Tensor, epoch: int, batch_i: int,
              y_tilt: torch.Tensor | None = None, within: tuple[int, int] | None = None):
        """(centred images, rotations, centred tilted images | None) of a batch: random
        rotations while pretraining, the poses found, or those poses with their corrections
        (which carry gradients); a tilted image is centred by its particle's shift. `within`:
        (first position, size) of a rank's share in its global batch (default: all of it)."""
        phase = self.phase(epoch)
        if phase == PRETRAIN:
            seq = np.random.SeedSequence([self.cfg.seed, epoch, batch_i, 1])
            g = torch.Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0] >> 1))
            first, size = within or (0, len(idx))
            rot = random_rotations(size, g)[first:first + len(idx)]
            return y, rot.to(y.device), y_tilt
        rot, shift = self.rot[idx].to(y.device), self.shift[idx].to(y.device)
        if phase == REFINE:
            d = self.delta(idx.to(self.device))
            rot = rot @ skew_exp(d[:, :3])
            shift = shift + d[:, 3:]
        return (center_hartley(y, self.freqs, shift), rot,
                None if y_tilt is None else center_hartley(y_tilt, self.freqs, shift))

    def step(self, epoch: int) -> None:
        """After the decoder's optimiser step: the pose corrections' step (refinement only)."""
        if self.phase(epoch) == REFINE:
            if self.group.active:     # the rows' gradients of the global batch's mean loss
                self.delta.weight.grad.div_(self.group.world_size)
            self.optim.step()
            self.optim.zero_grad(set_to_none=True)

    def own(self, order: torch.Tensor, epoch: int) -> None:
        """At an epoch's start: which rank refines each image's correction in it."""
        if self.group.active and self.phase(epoch) == REFINE:
            self.owner = self.group.owners(order, self.cfg.batch_size)

    @torch.no_grad()
    def sync(self, epoch: int) -> None:
        """On several processes, in a refinement epoch: every image's correction and its Adam
        moments as the rank that trains it has them (each image is trained by one rank an
        epoch), on every rank; before a checkpoint and at the epoch's end."""
        if not self.group.active or self.phase(epoch) != REFINE:
            return
        mine = (self.owner == self.group.rank).to(self.device)[:, None]
        rows = [self.delta.weight] + [s[k] for s in self.optim.state.values()
                                      for k in ("exp_avg", "exp_avg_sq")]
        for t in rows:
            t.copy_(self.group.all_sum(torch.where(mine, t, torch.zeros_like(t))))

    def poses(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every image's current rotation [N, 3, 3] and shift [N, 2] px, corrections applied."""
        with torch.no_grad():
            d = self.delta.weight.detach().cpu()
            return self.rot @ skew_exp(d[:, :3]), self.shift + d[:, 3:]

    def centre(self, idx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images of `idx` centred by their current shifts (for the encoder's pass)."""
        shift = self.shift[idx] + self.delta.weight.detach()[idx.to(self.device), 3:].cpu()
        return center_hartley(y, self.freqs, shift.to(y.device))

    def save(self, path) -> None:
        """pose.N.pkl: (rot [N, 3, 3], trans [N, 2] fraction of the box) as cryoDRGN writes."""
        rot, shift = self.poses()
        with atomic_open(path, "wb") as f:
            pickle.dump((rot.numpy().astype(np.float32),
                         shifts_to_cryodrgn(shift.numpy(), self.D)), f, protocol=4)

    def epoch_summary(self, epoch: int) -> dict:
        """For metrics.jsonl, after 0-based `epoch`: search time per image since the last
        summary (ms); while classifying, the images per class; after superposing the classes,
        how each was moved; after a search or refinement epoch that followed one, how much
        the poses changed (core/analysis/posechanges)."""
        out = {}
        rot, shift = self.poses()
        ref = self.ref.clone() if self.classifying(epoch) else None
        if self.last is not None:
            rot0, shift0, ref0 = self.last
            out.update(pose_changes(rot0.numpy(), shift0.numpy(), rot.numpy(), shift.numpy(),
                                    ref0, ref))
        self.last = None if self.phase(epoch) == PRETRAIN else (rot, shift, ref)
        if self.ref is not None and self.searched_images and self.frames is None:
            out["classes"] = torch.bincount(self.ref, minlength=len(self.refs)).tolist()
        if self.frames:
            out["class_frames"], self.frames = self.frames, []
        if self.searched_images:
            out["search_ms_per_image"] = 1e3 * self.search_seconds / self.searched_images
        self.search_seconds, self.searched_images = 0.0, 0
        return out

    def settle_advice(self, epoch: int, summary: dict) -> str | None:
        """After the last search epoch (0-based `epoch`, its `epoch_summary`): a warning where
        its poses still changed too much to call the search settled."""
        if epoch != self.search_end - 1 or "pose_change_deg" not in summary:
            return None
        return pose_change_advice(summary["pose_change_deg"],
                                  1 if self.refs is None else len(self.refs))

    def state_dict(self) -> dict:
        return {"rot": self.rot.clone(), "shift": self.shift.clone(),
                "ref": None if self.ref is None else self.ref.clone(), "last": self.last,
                "delta": self.delta.weight.detach().cpu(), "optim": self.optim.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.rot, self.shift = s["rot"], s["shift"]
        if s.get("ref") is not None:
            self.ref = s["ref"]
        self.last = s.get("last")
        with torch.no_grad():
            self.delta.weight.copy_(s["delta"])
        self.optim.load_state_dict(s["optim"])
