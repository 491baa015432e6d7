"""Multi-resolution grids on SO(3) and on in-plane shifts, for pose search.

SO(3): HEALPix directions (nested scheme, nside = 2^(level+1)) times in-plane angles
(12 * 2^level, offset by half a step), lifted to rotations by the Hopf fibration
(Yershova et al. 2010): direction (theta, phi) and angle psi give the column-form rotation
Rz(phi) Ry(theta) Rz(psi - offset), whose viewing axis R e_z is the direction; cryoscape's R
(row vectors, `coords_3d = coords_2d @ R`) is its transpose. Any section of the fibration is
singular somewhere: Yershova's (offset = phi) at the south pole, where children of a polar
pixel then lie up to 50 deg from their parent. So each HEALPix base face takes a section
regular on it: offset phi on the 4 northern faces, 0 on the 4 equatorial ones, -phi on the 4
southern ones (children stay in their parent's face; every direction still carries a uniform
in-plane grid, so the grid stays uniform). Level 0 is the paper's base grid of
576 = 48 x 12 rotations; each point has 8 children at level + 1 (its 4 nested HEALPix
sub-pixels times 2 half-step angles), and the children of all points form the next level
exactly once. Index of (pixel p, angle j) at a level: p * n_psi + j.

HEALPix nested pix2ang is written here (about 30 lines) rather than taken from healpy: healpy
is a compiled package without Windows wheels, which a desktop application cannot require, and
only this one function of it is needed. It was checked against healpy 1.20.1 (pix2ang,
nest=True) at nside 2..64: equal to 1e-12 rad. torch-so3 has no parent/child structure.

Shifts: a square grid of n x n cell centres over [-extent, extent]^2 px, each point with 4
children at half the spacing (the cell centres of the next level); a search refines a shift
over the 3 x 3 points at half the spacing around it (`shift_refinements`), so that a shift
found next to the true one's cell can still move into it.
"""
from __future__ import annotations

import math

import torch

BASE_NSIDE, BASE_PSI = 2, 12
_JRLL = (2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4)
_JPLL = (1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7)
# the largest angle (deg) between a level-l point and its children is below CHILD_DEG / 2^l
# (measured over all points of levels 0-3: 18.3, 20.2, 21.0, 21.5 deg times 2^-l, 21.7 at
# level 4, approaching the flat-space limit); the neighbour search's margin per level
CHILD_DEG = 24.0


def grid_size(level: int) -> int:
    """Number of rotations at a level: 576 * 8^level."""
    return 12 * BASE_NSIDE ** 2 * BASE_PSI * 8 ** level


def grid_spacing_deg(level: int) -> float:
    """Angular spacing of the level's grid: the cube root of SO(3)'s volume per point in the
    rotation-angle metric (8 pi^2 / n), 29.5 deg at level 0, halving per level (0.92 deg at
    level 5, the paper's final resolution)."""
    return math.degrees((8 * math.pi ** 2 / grid_size(level)) ** (1 / 3))


def _compress_bits(v: torch.Tensor, nbits: int) -> torch.Tensor:
    """The even bits of v packed together (HEALPix nested pixel -> x index)."""
    out = torch.zeros_like(v)
    for b in range(nbits):
        out |= ((v >> (2 * b)) & 1) << b
    return out


def healpix_pix2ang(nside: int, pix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(theta, phi) float64 of HEALPix nested pixel centres (nside a power of 2)."""
    order = nside.bit_length() - 1
    pix = pix.long()
    face, ipf = pix // nside ** 2, pix % nside ** 2
    ix, iy = _compress_bits(ipf, order), _compress_bits(ipf >> 1, order)
    jr = torch.tensor(_JRLL)[face] * nside - ix - iy - 1
    north, south = jr < nside, jr > 3 * nside
    nr = torch.where(north, jr, torch.where(south, 4 * nside - jr, nside))
    z = torch.where(north, 1 - nr.double() ** 2 / (3 * nside ** 2),
                    torch.where(south, nr.double() ** 2 / (3 * nside ** 2) - 1,
                                (2 * nside - jr).double() * 2 / (3 * nside)))
    kshift = torch.where(north | south, 0, (jr - nside) & 1)
    jp = (torch.tensor(_JPLL)[face] * nr + ix - iy + 1 + kshift) // 2
    jp = torch.where(jp > 4 * nside, jp - 4 * nside, jp)
    jp = torch.where(jp < 1, jp + 4 * nside, jp)
    phi = (jp.double() - (kshift + 1) * 0.5) * (math.pi / 2) / nr
    return torch.arccos(z.clamp(-1, 1)), phi


def _euler(level: int, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ZYZ angles (phi, theta, psi - offset) float64 of grid indices at a level."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    n_psi = BASE_PSI * 2 ** level
    nside = BASE_NSIDE * 2 ** level
    pix = idx // n_psi
    theta, phi = healpix_pix2ang(nside, pix)
    psi = ((idx % n_psi).double() + 0.5) * (2 * math.pi / n_psi)
    face = pix // nside ** 2
    offset = torch.where(face < 4, phi, torch.where(face < 8, 0.0, -phi))
    return phi, theta, psi - offset


def so3_quaternions(level: int, idx) -> torch.Tensor:
    """Unit quaternions (w, x, y, z) [n, 4] float64 of the column-form rotations of grid
    indices (the rotation-angle distance of two grid points is 2 acos |q1 . q2|)."""
    a, theta, c = _euler(level, idx)
    ch, sh = torch.cos(theta / 2), torch.sin(theta / 2)
    return torch.stack([ch * torch.cos((a + c) / 2), -sh * torch.sin((a - c) / 2),
                        sh * torch.cos((a - c) / 2), ch * torch.sin((a + c) / 2)], -1)


def so3_rotations(level: int, idx) -> torch.Tensor:
    """Rotation matrices [n, 3, 3] float32 (cryoscape's row-vector convention) of grid indices."""
    w, x, y, z = so3_quaternions(level, idx).unbind(-1)
    col = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)
    return col.transpose(1, 2).float().contiguous()


def so3_grid(level: int) -> torch.Tensor:
    """Every rotation of the level's grid [576 * 8^level, 3, 3] (row-vector convention)."""
    return so3_rotations(level, torch.arange(grid_size(level)))


def so3_children(level: int, idx) -> torch.Tensor:
    """Indices [len(idx), 8] at level + 1 of the children of grid points at `level`."""
    idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
    n_psi = BASE_PSI * 2 ** level
    pix, j = idx // n_psi, idx % n_psi
    sub = 4 * pix[:, None] + torch.arange(4)                       # [n, 4] sub-pixels
    ang = 2 * j[:, None] + torch.arange(2)                         # [n, 2] half-step angles
    return (sub[:, :, None] * (2 * n_psi) + ang[:, None, :]).reshape(-1, 8)


def so3_parent(level: int, idx) -> torch.Tensor:
    """Index at level - 1 of the parent of grid points at `level` (>= 1)."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    n_psi = BASE_PSI * 2 ** level
    return (idx // n_psi // 4) * (n_psi // 2) + (idx % n_psi) // 2


def rotation_distance(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Rotation angle (rad) between unit quaternions, broadcast over leading axes."""
    return 2 * torch.arccos((q1 * q2).sum(-1).abs().clamp(max=1.0))


def _within(level: int, q: torch.Tensor, radius: float) -> torch.Tensor:
    """Indices [n, C] (-1 padded) of the level's grid points within `radius` rad of the
    rotations q [n, 4]: the children of the points within radius + margin one level up."""
    if level == 0:
        cand = torch.arange(grid_size(0)).expand(len(q), -1)
    else:
        parents = _within(level - 1, q, radius + math.radians(CHILD_DEG) / 2 ** (level - 1))
        cand = so3_children(level - 1, parents.clamp(min=0).reshape(-1)).reshape(len(q), -1)
        cand = torch.where(parents.repeat_interleave(8, 1) >= 0, cand, -1)
    d = rotation_distance(q[:, None], so3_quaternions(level, cand.clamp(min=0)))
    d = torch.where((cand >= 0) & (d <= radius), d, math.inf)
    d, order = d.sort(1)
    width = max(int((d < math.inf).sum(1).max()), 1)
    return torch.where(d[:, :width] < math.inf, cand.gather(1, order[:, :width]), -1)


def so3_neighbours(level: int, idx, radius_deg: float | None = None) -> torch.Tensor:
    """Grid points at `level` within `radius_deg` (default 1.5 x the level's spacing: the 12
    to 16 nearest points) of each of the points `idx`, nearest first, the point itself left
    out: LongTensor [len(idx), K], padded with -1."""
    idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
    radius = math.radians(1.5 * grid_spacing_deg(level) if radius_deg is None else radius_deg)
    return _within(level, so3_quaternions(level, idx), radius)[:, 1:]   # [0]: the point


def shift_spacing(extent_px: float, n: int) -> float:
    """Spacing in px of an n x n shift grid over [-extent, extent]^2."""
    return 2 * extent_px / n


def shift_grid(extent_px: float, n: int) -> torch.Tensor:
    """Cell centres [n*n, 2] (x, y) px of an n x n grid over [-extent, extent]^2, x fastest."""
    h = shift_spacing(extent_px, n)
    f = -extent_px + h * (torch.arange(n, dtype=torch.float32) + 0.5)
    y, x = torch.meshgrid(f, f, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], 1)


def shift_children(shifts: torch.Tensor, spacing: float) -> torch.Tensor:
    """The 4 children [..., 4, 2] at half the spacing of shift points [..., 2] of a grid with
    `spacing` px: the centres of the point's cell's quarters."""
    q = spacing / 4
    off = torch.tensor([[-q, -q], [q, -q], [-q, q], [q, q]], dtype=shifts.dtype,
                       device=shifts.device)
    return shifts[..., None, :] + off


def shift_refinements(shifts: torch.Tensor, spacing: float) -> torch.Tensor:
    """The 3 x 3 points [..., 9, 2] at half the spacing centred on shift points [..., 2] of a
    grid with `spacing` px (x fastest): they span the point's cell and half a cell beyond."""
    f = torch.tensor([-0.5, 0.0, 0.5], dtype=shifts.dtype, device=shifts.device) * spacing
    y, x = torch.meshgrid(f, f, indexing="ij")
    return shifts[..., None, :] + torch.stack([x.reshape(-1), y.reshape(-1)], 1)
