"""Pose search over SO(3) x R^2 against the current volume, with frequency marching.

For an image Y (Hartley values on the loss circle of cryoDRGN's symmetric lattice, shifts not
undone) the loss of a pose (R, t) is, as in core/train/forward.run_batch,

    E(R, t) = sum_{|k| <= k_band} (Y_t(k) - C(k) V(k @ R))^2,

Y_t the image with the shift t undone (`center_hartley`), C the CTF. Expanded, the |Y_t|^2 term
does not depend on t (a phase shift on a centrosymmetric point set keeps the power), the cross
term is a matrix product of the shifted, CTF-weighted images [T, P] with the slices [P, R], and
|C V|^2 is C^2 [P] times the squared slices: one product scores every shift of every rotation.

Rounds (the paper's appendix A.1): round 0 scores a whole grid (`base_level` 1: 4608
rotations, x the shift grid) at |k| <= kmin, each rotation with its best shift; each later
round scores the 8 children of the rotations kept, one grid level finer, each with the best of
the 3 x 3 shifts at half the spacing around its parent's shift, the band growing linearly to
kmax; a last "polish" scores the 27 rotations and 9 shifts at half the final spacing around the
best. What is kept per round:
- "beam": the best `beam` rotations (as cryoDRGN's abinit_homo_old, which keeps poses);
- "bnb": the paper's bound: the band-limited sum is a lower bound of the loss at kmax (fewer
  non-negative terms), the upper bound is the kmax loss of the best lower bound; every
  candidate whose lower bound does not exceed it is kept (capped at `max_keep`, best first).
  At one grid level it never prunes the optimum (tests/test_posesearch.py); across levels it
  is a heuristic, as the paper says: a coarse candidate near the optimum can score worse than
  the upper bound and be pruned.
The beam is the default because it measures better: on 64 noiseless D=32 images (defaults,
no CTF) it finds every rotation within the final spacing (median 0.98 deg, max 2.6 deg), the
bound 94% (median 0.99 deg, max 5.8 deg), in the same time. A base grid of 576 (`base_level`
0) loses 3-11% of the images at D=32/64 with the beam: at |k| <= 12 px its 25-degree covering
radius is too coarse to rank the right basin among the best 8.

Tilt pairs (the paper's appendix D.2, `TiltPairs`): each particle's tilted image, at the pose
T @ R with the same shift (core/poses.tilted_poses), adds its own loss, so a pose is scored by
the sum of both images' losses (the base grid's tilted slices, too, computed once per search);
the result's loss is the mean over both images.

Slices come from a `VolumeSlicer` (trilinear interpolation of one decoded volume on a finer
grid; in a homogeneous search the decoder is frozen, so it is decoded once per search pass)
or a `DecoderSlicer` (the MLP at every point: exact, per-image z, for reference and tests).
Oversampling, against direct decoding (relative error on rotated loss circles, randomly
initialised decoders): 3x256 Fourier-domain decoder at D=64: 3.5% at oversample 1, 1.2% at 2;
3x64 at D=32: 2.1%, 0.7%, 0.4% at 1, 2, 3 (Hartley-domain: 3.7%, 1.2%, 0.7%). Oversample 2 is
the default: the errors are far below the noise of real images, and images made by direct
decoding are searched as accurately as images of the map itself (tests/test_posesearch.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from cryoscape.core.ctf import ctf_from_params
from cryoscape.core.decode import CHUNK_FLOATS
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.models.decoder import FourierDecoder
from cryoscape.core.so3grid import (
    grid_spacing_deg,
    shift_grid,
    shift_refinements,
    shift_spacing,
    so3_children,
    so3_grid,
    so3_rotations,
)
from cryoscape.core.train.forward import SliceLattice
from scipy.spatial.transform import Rotation

METHODS = ("beam", "bnb")
CHILDREN_ROT, SHIFTS_REFINED = 8, 9


@dataclass
class SearchConfig:
    """Pose search settings; None fields get defaults for the box D (`resolved`)."""
    method: str = "beam"          # "beam" (keep the best `beam`) or "bnb" (the paper's bound)
    beam: int = 8
    max_keep: int = 64            # bnb: at most this many candidates kept per image and round
    base_level: int = 1           # SO(3) grid level of round 0 (0: 576 rotations, 1: 4608)
    levels: int | None = None     # refinement rounds after round 0 (None: to the grid level
                                  # log2(D/4): 1.8 deg at D=64, 0.9 deg at D=128)
    kmin: int = 12                # band (px radius) of round 0, marching to kmax
    kmax: int | None = None       # band of the last round (None: D // 2, the whole loss circle)
    t_extent: float | None = None  # shifts searched in [-t_extent, t_extent]^2 px (None: 10 px
                                   # at D=128, scaled with D, at least 3)
    t_ngrid: int | None = None    # points per axis of the base shift grid (None: spacing
                                  # D/64 px, at least 0.5)
    polish: bool = True           # finally: 27 rotations x 9 shifts at half the last spacing
    oversample: int = 2           # VolumeSlicer: decoded on an oversample-times finer grid
    chunk: int | None = None      # images per chunk (None: from memory_mb)
    memory_mb: int = 1024         # budget of one chunk's intermediate arrays

    def resolved(self, D: int) -> SearchConfig:
        if self.method not in METHODS:
            raise CryoscapeError(f"unknown pose search method {self.method!r}; choose from "
                                 f"{', '.join(METHODS)}")
        kmax = D // 2 if self.kmax is None else min(int(self.kmax), D // 2)
        kmin = min(int(self.kmin), kmax)
        levels = (max(1, math.ceil(math.log2(D / 4)) - self.base_level)
                  if self.levels is None else int(self.levels))
        extent = max(3.0, 10.0 * D / 128) if self.t_extent is None else float(self.t_extent)
        ngrid = (math.ceil(2 * extent / max(D / 64, 0.5)) if self.t_ngrid is None
                 else int(self.t_ngrid))
        if self.beam < 1 or self.max_keep < 1 or levels < 0 or ngrid < 1 or extent <= 0 \
                or self.oversample < 1 or kmin < 1 or self.base_level not in (0, 1, 2):
            raise CryoscapeError(f"invalid pose search settings: {self}")
        return replace(self, kmin=kmin, kmax=kmax, levels=levels, t_extent=extent,
                       t_ngrid=ngrid)


@dataclass
class SearchResult:
    """rot [B, 3, 3] (coords_3d = coords_2d @ rot); shift [B, 2] px, how far the content is
    displaced in the image (center_hartley undoes it; TrainData's sign); loss [B] the mean
    squared error of the best pose over the whole loss circle (run_batch's mse per image);
    ref [B] (search_model against reference z) the index of the best reference."""
    rot: torch.Tensor
    shift: torch.Tensor
    loss: torch.Tensor
    ref: torch.Tensor | None = None


@dataclass
class TiltPairs:
    """The tilted images of the particles searched: y [B, len(lattice.keep)] (not centred: the
    particle's shift applies to both), ctf [B, 9] | None, rot [3, 3] the tilt rotation T (their
    poses are T @ R, core/poses.tilt_rotation)."""
    y: torch.Tensor
    ctf: torch.Tensor | None
    rot: torch.Tensor


class VolumeSlicer:
    """Hartley values of one volume at 3D frequencies, by trilinear interpolation on a grid
    `oversample` times finer than the box's lattice, held only out to the radius needed.

    The grid has two channels, H(k) and H(-k), valid on the half space that
    `models.decoder.upper_half` leaves out (plus two cells beyond it): a point of the other
    half is reflected, read there and the channels swapped. A Fourier-domain decoder is a
    different function on each half (its output at k is mirrored to -k), so its volume jumps
    across the plane between them; read on one half only, each channel is the MLP's own smooth
    output, and interpolation never straddles the jump (straddling it costs 12% relative error
    with a random decoder, 3% with the half rule).
    """

    def __init__(self, grid: torch.Tensor, scale: float):
        """grid [2, G, G, G] ([z, y, x], centre at (G-1)/2): H(k) and H(-k) on the half space
        z <= 0 at least; `scale`: grid steps per cycle/px."""
        self.G = grid.shape[-1]
        self.grid = grid[None].contiguous()                          # [1, 2, G, G, G]
        self.norm = 2 * float(scale) / (self.G - 1)   # cycles/px -> grid_sample's [-1, 1]
        self.per_image = False

    @classmethod
    @torch.no_grad()
    def from_model(cls, model, D: int, z: torch.Tensor | None = None, oversample: int = 2,
                   kmax: int | None = None) -> VolumeSlicer:
        """Decode `model` (a VAE or a volume decoder; z [zdim] or [1, zdim] for zdim > 0) on
        the fine grid inside the sphere of radius kmax px (default D // 2), on the half space
        z <= 2 cells, in batches."""
        dec = getattr(model, "decoder", model)
        n = int(oversample)
        kmax = D // 2 if kmax is None else kmax
        half = math.ceil(n * kmax) + 2              # grid half-width: the radius + a cell
        G = 2 * half + 1
        device = next(dec.parameters()).device
        f = (torch.arange(G, device=device) - half).float()
        zz, yy, xx = torch.meshgrid(f, f, f, indexing="ij")
        idx = torch.stack([xx.reshape(-1), yy.reshape(-1), zz.reshape(-1)], 1)
        fourier = isinstance(dec, FourierDecoder)
        # every corner a slice point can touch (of a Fourier decoder: on the half read,
        # z <= 0, and a margin; a Hartley decoder's H(-k) is its value at -k)
        inside = idx.pow(2).sum(1) <= (n * kmax + 2) ** 2
        sel = (inside & (idx[:, 2] <= 2) if fourier else inside).nonzero()[:, 0]
        coords = idx[sel] / (n * D)
        if z is not None:
            z = torch.as_tensor(z, dtype=torch.float32, device=device).reshape(1, -1)
        hidden = max(m.out_features for m in dec.modules() if isinstance(m, torch.nn.Linear))
        step = max(256, CHUNK_FLOATS.get(device.type, 2 ** 24) // hidden)
        vol = torch.zeros(2, G ** 3, device=device)
        for s in range(0, len(sel), step):
            c = coords[s:s + step]
            out = dec.mlp(c[None] if z is not None else c, z).reshape(len(c), -1)
            i = sel[s:s + step]
            if fourier:                           # (Re F, Im F) at k: H(k), H(-k)
                vol[0, i], vol[1, i] = out[:, 0] - out[:, 1], out[:, 0] + out[:, 1]
            else:
                vol[0, i] = out[:, 0]
        if not fourier:                           # H(-k): the mirror
            vol[1] = vol[0].flip(0)
        return cls(vol.reshape(2, G, G, G), n * D)

    @classmethod
    def from_map(cls, vol, oversample: int = 2) -> VolumeSlicer:
        """From a real-space map [D, D, D] ([z, y, x]): zero-padded to oversample * D, its
        centred Hartley transform, extended to the symmetric (oversample * D + 1)^3 grid."""
        from cryoscape.core.fourier import ht3_center
        v = torch.as_tensor(vol, dtype=torch.float32)
        D = v.shape[-1]
        nD = int(oversample) * D
        p = (nD - D) // 2
        h = ht3_center(torch.nn.functional.pad(v, (p, nD - D - p) * 3))
        h = torch.cat([h, h[:1]], 0)
        h = torch.cat([h, h[:, :1]], 1)
        h = torch.cat([h, h[:, :, :1]], 2)
        return cls(torch.stack([h, h.flip(0, 1, 2)]), nD)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """Hartley values [...] at coords [..., 3] (cycles/px)."""
        return self.pair(coords)[0]

    def pair(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(H(k), H(-k)) at coords [..., 3], from one interpolation of both channels. Points
        with z > 0 are read at -k (the plane z = 0 itself, where a Fourier decoder splits it
        by y and x, is read as it lies: it has no area on a rotated slice)."""
        flip = coords[..., 2:] > 0
        h = self._sample(torch.where(flip, -coords, coords))
        flip = flip[..., 0]
        return torch.where(flip, h[1], h[0]), torch.where(flip, h[0], h[1])

    def _sample(self, coords):
        """Both channels [2, ...] at coords [..., 3]. grid_sample: one pass in C++ (3x faster
        than gathering the 8 corners by indexing); on the CPU it runs a thread per batch
        entry, so the points are split into a batch."""
        grid = self.grid
        n = coords[..., 0].numel()
        parts = torch.get_num_threads() if grid.device.type == "cpu" else 1
        parts = max(1, min(parts, n // 4096))
        pad = (-n) % parts
        g = (coords.reshape(-1, 3) * self.norm).to(grid.dtype)
        if pad:
            g = torch.cat([g, g.new_zeros(pad, 3)])
        g = g.reshape(parts, 1, 1, -1, 3)
        out = torch.nn.functional.grid_sample(grid.expand(parts, -1, -1, -1, -1), g,
                                              align_corners=True)      # [parts, 2, 1, 1, m]
        out = out.permute(1, 0, 2, 3, 4).reshape(2, -1)[:, :n]
        return out.reshape(2, *coords.shape[:-1])


class DecoderSlicer:
    """Hartley values from the decoder itself at every point (exact), at one z per image."""

    def __init__(self, model, z: torch.Tensor | None = None, chunk_points: int = 2 ** 16):
        self.model, self.z, self.chunk = model, z, chunk_points
        self.per_image = z is not None

    def subset(self, idx) -> DecoderSlicer:
        return DecoderSlicer(self.model, self.z[idx], self.chunk) if self.per_image else self

    @torch.no_grad()
    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """coords [B, ..., 3] for per-image z [B, zdim]; without z, [..., 3] -> [...]."""
        if not self.per_image:
            flat = coords.reshape(-1, 3)
            out = torch.cat([self.model.decode(flat[s:s + self.chunk])
                             for s in range(0, len(flat), self.chunk)])
            return out.reshape(coords.shape[:-1])
        B = len(self.z)
        flat = coords.reshape(B, -1, 3)
        step = max(1, self.chunk // B)
        out = torch.cat([self.model.decode(flat[:, s:s + step], self.z)
                         for s in range(0, flat.shape[1], step)], 1)
        return out.reshape(coords.shape[:-1])


class PoseSearch:
    """Searches the poses of batches of images against a slicer (see the module docstring)."""

    def __init__(self, lattice: SliceLattice, cfg: SearchConfig | None = None, device="cpu"):
        self.lat, self.D = lattice, lattice.D
        self.cfg = (cfg or SearchConfig()).resolved(self.D)
        self.device = torch.device(device)
        c = self.cfg
        coords = lattice.coords.to(self.device)
        r_px = coords[:, :2].norm(dim=1) * self.D
        L = c.levels
        self.final_level = c.base_level + L
        self.ks = [c.kmax if L == 0 else c.kmin + (c.kmax - c.kmin) * i / L for i in range(L + 1)]
        # band point sets keep the loss circle's centrosymmetric order (point -k at n-1-i)
        self.bands = [(r_px <= k + 1e-6).nonzero().squeeze(1) for k in self.ks]
        assert all(torch.equal(r_px[b], r_px[b].flip(0)) for b in self.bands)
        self.final_band = (r_px <= c.kmax + 1e-6).nonzero().squeeze(1)
        self.coords = coords
        self.all_points = torch.arange(len(coords), device=self.device)
        self.base_rot = so3_grid(c.base_level).to(self.device)
        self.base_shift = shift_grid(c.t_extent, c.t_ngrid).to(self.device)
        self.h0 = shift_spacing(c.t_extent, c.t_ngrid)
        theta = (-2 * math.pi) * (self.base_shift @ coords[self.bands[0], :2].T)  # [T0, P0]
        self.base_cos, self.base_sin = torch.cos(theta), torch.sin(theta)
        self.keep = c.beam if c.method == "beam" else c.max_keep
        self.polish = self._offsets(1)

    # ---- public -------------------------------------------------------------------------
    @torch.no_grad()
    def search(self, y: torch.Tensor, ctf: torch.Tensor | None, slicer,
               prior: SearchResult | None = None,
               tilt: TiltPairs | None = None) -> SearchResult:
        """Best poses of images y [B, len(lattice.keep)] (not centred), ctf [B, 9] | None;
        with `tilt`, of the tilt pairs (both images' losses summed).

        With a `prior` (an earlier result for the same images), a local search instead:
        3 rounds of 27 rotations x 9 shifts around the prior pose at half the final spacing
        times 4, 2, 1 (it follows poses that moved by up to ~2 final spacings).
        The result's tensors are on the CPU."""
        views = [self._view(y, ctf, None, len(y))]
        if tilt is not None:
            views.append(self._view(tilt.y, tilt.ctf, tilt.rot, len(y)))
        B = len(y)
        base = None
        if prior is None and not slicer.per_image:   # the base grid's slices: shared
            base = [self._slices(slicer, self.bands[0], self._rotated(self.base_rot, T))
                    for _, _, T in views]                                    # [R0, P0] each
        out = [torch.empty(B, 3, 3), torch.empty(B, 2), torch.empty(B)]
        step = max(1, self._chunk_size() // len(views))
        for s in range(0, B, step):
            i = torch.arange(s, min(B, s + step))
            sl = slicer.subset(i) if slicer.per_image else slicer
            vi = [(v[i], None if c is None else c[i], T) for v, c, T in views]
            res = (self._search_chunk(vi, sl, base) if prior is None
                   else self._local_chunk(vi, sl, prior.rot[i].to(self.device),
                                          prior.shift[i].to(self.device)))
            for o, r in zip(out, res):
                o[i] = r.cpu()
        return SearchResult(*out)

    @torch.no_grad()
    def search_model(self, model, y: torch.Tensor, ctf: torch.Tensor | None,
                     z: torch.Tensor | None = None, prior: SearchResult | None = None,
                     tilt: TiltPairs | None = None) -> SearchResult:
        """Search against a model in eval mode (`tilt`: the images' tilt pairs, as `search`).
        Homogeneous: one VolumeSlicer for all images.

        Heterogeneous (z [K, zdim], K reference points of the latent space): every image is
        searched against each of the K volumes decoded there and keeps the best pose of the
        best volume (`SearchResult.ref`), as a 3D classification assigns images to classes.
        Why volumes, not the MLP at every candidate of every image (cryoDRGN's way,
        `DecoderSlicer`: ~2.5 million points per image here, ~1.2 TFLOP per image at D=64 with
        a 3x256 decoder): a volume is decoded once (at oversample 1 and a band of D/4 in
        ~0.1 CPU s, of D/2 in ~5) and shared by all the images; and images of a
        conformation unlike the others' find their poses only against a volume of their own
        (at SNR 0.1, against the other state of the two-conformation set: 80% off by > 20
        degrees, against their own: none).
        """
        D, c = self.D, self.cfg
        if getattr(model, "zdim", 0) and z is None:
            raise CryoscapeError("pose search with a heterogeneous model needs reference z")
        refs = [None] if z is None else torch.as_tensor(z, dtype=torch.float32).reshape(
            -1, model.zdim)
        best = None
        for j, zj in enumerate(refs):
            r = self.search(y, ctf, VolumeSlicer.from_model(model, D, zj, c.oversample, c.kmax),
                            prior, tilt)
            r.ref = torch.full((len(y),), j, dtype=torch.long)
            if best is None:
                best = r
                continue
            better = r.loss < best.loss
            for name in ("rot", "shift", "loss", "ref"):
                getattr(best, name)[better] = getattr(r, name)[better]
        return best

    # ---- internals ----------------------------------------------------------------------
    # A "view" is one image of each particle: (y [B, loss points], CTF parameters [B, 9] |
    # None, T [3, 3] | None): the untilted view (T None) and, for tilt pairs, the tilted one,
    # whose slices are taken at T @ R. Scores are summed over the views.
    def _view(self, y, ctf, T, B):
        if y.dim() != 2 or y.shape[1] != len(self.lat.keep) or len(y) != B:
            raise CryoscapeError(f"pose search: images of {tuple(y.shape)} values, expected "
                                 f"[{B}, {len(self.lat.keep)}] (the lattice's kept points)")
        if ctf is not None and tuple(ctf.shape) != (B, 9):
            raise CryoscapeError(f"pose search: CTF parameters of {tuple(ctf.shape)}, expected "
                                 f"[{B}, 9]")
        return (y[:, self.lat.loss_sel].to(self.device, torch.float32),
                None if ctf is None else ctf.to(self.device, torch.float32),
                None if T is None else torch.as_tensor(T, dtype=torch.float32,
                                                       device=self.device))

    @staticmethod
    def _rotated(R, T):
        """The poses of a view: R itself, or T @ R for a tilted one."""
        return R if T is None else T @ R

    def _ctf_views(self, views):
        """Views with the CTF parameters turned into values on the loss circle."""
        return [(y, None if c is None else ctf_from_params(c, self.coords[:, :2], self.D), T)
                for y, c, T in views]

    def _chunk_size(self) -> int:
        """Images per chunk: a round's arrays per image (slices, their coordinates, weighted
        copies: ~8 floats per slice point; scores) and the base round's ([T0, P0] shifted
        images, [T0, R0] scores and their temporaries) within cfg.memory_mb."""
        if self.cfg.chunk:
            return int(self.cfg.chunk)
        P = max(len(b) for b in self.bands)
        per_image = max(self.keep * CHILDREN_ROT * (8 * P + 3 * SHIFTS_REFINED),
                        len(self.base_shift) * (2 * len(self.bands[0]) + 3 * len(self.base_rot)))
        return max(1, min(4096, self.cfg.memory_mb * 2 ** 20 // (4 * per_image)))

    def _slices(self, slicer, band, R):
        """Slices [..., P] of rotations R [..., 3, 3] at the points `band`: with a VolumeSlicer
        only half of them are interpolated (the band is centrosymmetric in order)."""
        pts = self.coords[band]
        if not hasattr(slicer, "pair"):
            return slicer(pts @ R)
        h, h_neg = slicer.pair(pts[: len(band) // 2] @ R)
        return torch.cat([h, h_neg.flip(-1)], -1)

    def _terms(self, y, C, band):
        """Band-limited image terms: (Y C, Y(-k) C, C^2 or None, sum Y^2)."""
        yb, yfb = y[:, band], y.flip(-1)[:, band]
        ysq = (yb * yb).sum(1)
        if C is None:
            return yb, yfb, None, ysq
        cb = C[:, band]
        return yb * cb, yfb * cb, cb * cb, ysq

    def _shifted(self, yc, yfc, shifts, band):
        """Images (Y C, Y(-k) C, [B, P]) with shifts [B, ..., 2] undone: [B, ..., P]."""
        theta = (-2 * math.pi) * (shifts @ self.coords[band, :2].T)
        extra = (1,) * (shifts.dim() - 2)
        return (torch.cos(theta) * yc.reshape(len(yc), *extra, -1)
                + torch.sin(theta) * yfc.reshape(len(yc), *extra, -1))

    def _search_chunk(self, views, slicer, base):
        views = self._ctf_views(views)
        B, dev = len(views[0][0]), self.device
        # round 0: every base rotation and shift, each rotation with its best shift (summed
        # over the views first: the views share the shift)
        band = self.bands[0]
        E = None
        for v, (y, C, T) in enumerate(views):
            yc, yfc, c2, ysq = self._terms(y, C, band)
            S = base[v] if base is not None else self._slices(
                slicer, band, self._rotated(self.base_rot.expand(B, -1, -1, -1), T))
            A = self.base_cos * yc[:, None] + self.base_sin * yfc[:, None]      # [B, T0, P0]
            cross = A @ S.transpose(-1, -2)                                       # [B, T0, R0]
            S2 = S * S
            norm = (S2.sum(-1).expand(B, -1) if c2 is None
                    else (c2 @ S2.T if S2.dim() == 2 else (S2 @ c2[:, :, None]).squeeze(-1)))
            e = ysq[:, None, None] - 2 * cross + norm[:, None, :]
            E = e if E is None else E.add_(e)
        E, t_best = E.min(1)                                                      # [B, R0]
        cand_rot = torch.arange(len(self.base_rot), device=dev).expand(B, -1)
        b0 = self.cfg.base_level
        rot_idx, shifts, valid = self._select(E, views, b0, cand_rot, self.base_shift[t_best],
                                              slicer)
        spacing = self.h0
        for r in range(1, len(self.ks)):
            level = b0 + r
            cand = so3_children(level - 1, rot_idx.reshape(-1).cpu())            # [B*K, 8]
            R = so3_rotations(level, cand.reshape(-1)).to(dev).reshape(B, -1, CHILDREN_ROT, 3, 3)
            E, cand_shift = self._score(views, slicer, self.bands[r], R, shifts, spacing,
                                        valid[:, :, None].expand(-1, -1, CHILDREN_ROT))
            rot_idx, shifts, valid = self._select(E, views, level, cand.to(dev).reshape(B, -1),
                                                  cand_shift, slicer)
            spacing /= 2
        # polish: the 3 x 3 x 3 rotations at half the final spacing around the best (the
        # children of the kept rotations need not hold the grid point nearest the optimum),
        # each with the 3 x 3 shifts at half the final spacing around its shift
        best_rot = so3_rotations(self.final_level, rot_idx[:, 0].cpu()).to(dev)
        best_shift = shifts[:, 0]
        if self.cfg.polish:
            best_rot, best_shift = self._local(views, slicer, best_rot, best_shift, 1, spacing)
        loss = self._loss(views, best_rot, best_shift, slicer, self.all_points)
        return best_rot, best_shift, loss / (len(self.all_points) * len(views))

    def _local_chunk(self, views, slicer, rot, shift):
        views = self._ctf_views(views)
        spacing = self.h0 / 2 ** self.cfg.levels
        for f in (4, 2, 1):
            rot, shift = self._local(views, slicer, rot, shift, f, f * spacing)
        loss = self._loss(views, rot, shift, slicer, self.all_points)
        return rot, shift, loss / (len(self.all_points) * len(views))

    def _local(self, views, slicer, rot, shift, factor, spacing):
        """Best of the 27 rotations at `factor` x half the final spacing around rot [B, 3, 3]
        (rotation vectors on a 3 x 3 x 3 lattice), each with the 3 x 3 shifts at half
        `spacing` around shift [B, 2], by the loss at kmax."""
        R = (self.polish if factor == 1 else self._offsets(factor)) @ rot[:, None]
        E, cand_shift = self._score(views, slicer, self.final_band, R[:, None], shift[:, None],
                                    spacing)
        k = E.argmin(1)
        bi = torch.arange(len(rot), device=self.device)
        return R[bi, k], cand_shift[bi, k]

    def _offsets(self, factor: float) -> torch.Tensor:
        """The 27 rotations [27, 3, 3] with rotation vectors {-1, 0, 1}^3 x factor x half the
        final grid spacing."""
        step = factor * math.radians(grid_spacing_deg(self.final_level)) / 2
        f = torch.tensor([-step, 0.0, step], dtype=torch.float64)
        rv = torch.stack(torch.meshgrid(f, f, f, indexing="ij"), -1).reshape(-1, 3)
        m = Rotation.from_rotvec(rv.numpy()).as_matrix()
        return torch.from_numpy(m).float().to(self.device)

    def _score(self, views, slicer, band, R, shifts, spacing, valid=None):
        """Scores [B, K * M] of rotations R [B, K, M, 3, 3] grouped by the shift of their
        parent (shifts [B, K, 2]), each with the best of the 3 x 3 shifts at half `spacing`
        around it (returned too, [B, K * M, 2]); inf where not `valid` [B, K, M]."""
        B, K, M = R.shape[:3]
        offsets = shift_refinements(torch.zeros(2, device=self.device), spacing)  # [9, 2]
        theta = (-2 * math.pi) * (offsets @ self.coords[band, :2].T)            # [9, P]
        cos_o, sin_o = torch.cos(theta).T, torch.sin(theta).T
        # shift t = parent + offset o: Y shifted by t = cos(o) U + sin(o) V with U, V the
        # image shifted by the parent (and its mirror): the 9 offsets are one product
        tp = (-2 * math.pi) * (shifts @ self.coords[band, :2].T)                 # [B, K, P]
        cp, sp = torch.cos(tp), torch.sin(tp)
        E = None
        for y, C, T in views:
            S = self._slices(slicer, band, self._rotated(R, T).reshape(B, K * M, 3, 3))
            S = S.reshape(B, K, M, -1)
            yc, yfc, c2, ysq = self._terms(y, C, band)
            U = cp * yc[:, None] + sp * yfc[:, None]
            V = cp * yfc[:, None] - sp * yc[:, None]
            cross = (U[:, :, None] * S) @ cos_o + (V[:, :, None] * S) @ sin_o     # [B, K, M, 9]
            S2 = S * S
            norm = S2.sum(-1) if c2 is None else (S2 @ c2[:, None, :, None]).squeeze(-1)
            e = ysq[:, None, None, None] - 2 * cross + norm[..., None]
            E = e if E is None else E.add_(e)
        E, o_best = E.min(3)
        if valid is not None:
            E = E.masked_fill(~valid, math.inf)
        E = E.reshape(B, -1)
        return E, (shifts[:, :, None] + offsets[o_best]).reshape(B, -1, 2)

    def _loss(self, views, rot, shift, slicer, band):
        """Summed squared error [B] over the views of one pose per particle (rot [B, 3, 3],
        shift [B, 2]) over the points `band` of the loss circle."""
        out = None
        for y, C, T in views:
            yc, yfc, _, _ = self._terms(y, None, band)
            centred = self._shifted(yc, yfc, shift[:, None], band)[:, 0]
            S = self._slices(slicer, band, self._rotated(rot, T))                  # [B, P]
            pred = S if C is None else S * C[:, band]
            e = (centred - pred).pow(2).sum(1)
            out = e if out is None else out + e
        return out

    def _select(self, E, views, level, cand_rot, cand_shift, slicer):
        """Rotations kept from scores E [B, N] (inf: none) of candidate rotations (grid
        indices at `level` cand_rot [B, N], each with its best shift cand_shift [B, N, 2]):
        (indices [B, K], shifts [B, K, 2], valid [B, K]). beam: the best cfg.beam; bnb: every
        E <= the upper bound (the kmax loss of the best), best first, at most max_keep."""
        vals, sel = E.topk(min(self.keep, E.shape[1]), dim=1, largest=False)
        rot = cand_rot.gather(1, sel)
        shifts = cand_shift.gather(1, sel[..., None].expand(-1, -1, 2))
        valid = torch.isfinite(vals)
        if self.cfg.method == "bnb":
            best = so3_rotations(level, rot[:, 0].cpu()).to(self.device)
            ub = self._loss(views, best, shifts[:, 0], slicer, self.final_band)
            # float32 sums: allow their rounding (relative to the image power)
            tol = 1e-5 * sum((y[:, self.final_band] ** 2).sum(1) for y, _, _ in views)
            valid &= vals <= (ub + tol)[:, None]
            n = int(valid.sum(1).max())
            rot, shifts, valid = rot[:, :n], shifts[:, :n], valid[:, :n]
        return rot, shifts, valid
