"""Aligning one map onto another (rotation and hand) and moving the poses with it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from cryoscape.core.poses import FLIP
from cryoscape.core.posesearch import VolumeSlicer
from cryoscape.core.simulate import make_volume
from cryoscape.core.so3grid import grid_spacing_deg
from cryoscape.core.train.abinit import random_rotations
from cryoscape.core.train.forward import SliceLattice
from cryoscape.core.volalign import (
    align_maps,
    moved_poses,
    moved_shifts,
    rotate_map,
    rotation_angle,
    shift_map,
    superpose_maps,
)

D = 32
MIRROR = torch.as_tensor(FLIP, dtype=torch.float32)


@pytest.mark.parametrize("mirrored", [False, True])
def test_align_finds_the_rotation_and_hand_and_moves_the_poses(mirrored):
    """A map seen in another frame (rotated by Q0, and mirrored): align_maps finds the frame
    within the final grid spacing, and every slice of the moving map at a pose R equals the
    reference's slice at the moved pose."""
    ref = VolumeSlicer.from_map(make_volume("homogeneous", None, D))
    g = torch.Generator().manual_seed(1)
    Q0 = random_rotations(1, g)[0]
    frame = MIRROR @ Q0 if mirrored else Q0

    def mov(k):                        # the same map, in the other frame
        return ref(k @ frame)

    Q, found_mirrored, corr = align_maps(ref, mov, D, D // 4)
    assert found_mirrored == mirrored and corr > 0.9
    expected = MIRROR @ Q0.T @ MIRROR if mirrored else Q0.T    # mov(k @ [MIRROR @] Q) = ref(k)
    assert rotation_angle(Q.T @ expected) < grid_spacing_deg(4)
    R = random_rotations(16, g)
    x = SliceLattice(D).coords                                        # the slice's points
    moved = moved_poses(R, Q, found_mirrored)
    np.testing.assert_allclose(torch.linalg.det(moved), 1.0, atol=1e-5)
    a, b = mov(x @ R), ref(x @ moved)
    assert float((a - b).norm() / a.norm()) < 0.05


def test_align_without_hands_keeps_the_hand():
    ref = VolumeSlicer.from_map(make_volume("homogeneous", None, D))

    def mov(k):
        return ref(k @ MIRROR)

    assert align_maps(ref, mov, D, D // 4, hands=False)[1] is False
    assert align_maps(ref, mov, D, D // 4)[1] is True


@pytest.mark.parametrize("mirrored", [False, True])
def test_two_conformations_are_superposed_on_their_shared_part(mirrored):
    """The two states of the two-conformation model (an arm moved), the second seen in another
    frame and position: whole maps superposed are pulled off the shared frame by the arm (8
    degrees here); superpose_maps, refined on the maps' shared support, lands within 2.5
    degrees of it (1-1.3 here; the benchmark's pair at D=64 goes from 7.1 to 0.7) and finds
    the offset within half a pixel."""
    ref, other = (torch.as_tensor(make_volume("discrete", s, D, states=2)) for s in (0, 1))
    Q0 = random_rotations(1, torch.Generator().manual_seed(1))[0]
    frame = MIRROR @ Q0 if mirrored else Q0
    p0 = torch.tensor([1.5, -1.0, 0.5])
    turned = rotate_map(other, frame.T)                 # other(x) = turned(x @ frame)
    mov = shift_map(turned, -p0)                        # other(x) = mov(x @ frame + p0)

    def error(Q, found_mirrored):
        assert found_mirrored == mirrored
        return rotation_angle((MIRROR @ Q if found_mirrored else Q).T @ frame)

    whole = error(*align_maps(VolumeSlicer.from_map(ref), VolumeSlicer.from_map(turned), D,
                              D // 4)[:2])
    Q, found_mirrored, p, corr = superpose_maps(ref, mov, D // 4)
    assert whole > 6 and error(Q, found_mirrored) < 2.5 and corr > 0.8
    assert float((p - p0).norm()) < 0.5


@pytest.mark.parametrize("mirrored", [False, True])
def test_moved_poses_and_shifts_give_the_same_images(mirrored):
    """An image of the moving map at (R, t) is the reference's image at the moved pose and
    shift, the moving map being the reference turned (and mirrored) and displaced."""
    ref = torch.as_tensor(make_volume("homogeneous", None, D))
    g = torch.Generator().manual_seed(3)
    Q0 = random_rotations(1, g)[0]
    frame = MIRROR @ Q0 if mirrored else Q0
    p0 = torch.tensor([2.0, -1.0, 1.5])
    mov = shift_map(rotate_map(ref, frame.T), -p0)      # ref(x) = mov(x @ frame + p0)
    Q, found_mirrored, p, _ = superpose_maps(ref, mov, D // 4)
    assert found_mirrored == mirrored
    R, t = random_rotations(16, g), torch.randn(16, 2, generator=g)
    x = SliceLattice(D).coords                          # the slice's points, cycles/px
    a = image(VolumeSlicer.from_map(mov), x, R, t)
    b = image(VolumeSlicer.from_map(ref), x, moved_poses(R, Q, found_mirrored),
              moved_shifts(R, t, p))
    assert float((a - b).abs().norm() / a.abs().norm()) < 0.1
    # the shifts matter: unmoved, the images differ
    c = image(VolumeSlicer.from_map(ref), x, moved_poses(R, Q, found_mirrored), t)
    assert float((a - c).abs().norm() / a.abs().norm()) > 0.3


def image(hartley, x, R, t):
    """Fourier transforms [n, P] of the images of a map (its Hartley values at coords) at
    poses R [n, 3, 3] with content shifted by t [n, 2] px, at 2D points x [P, 3]."""
    k = x @ R
    h, h_minus = hartley(k), hartley(-k)
    F = torch.complex((h + h_minus) / 2, (h_minus - h) / 2)
    return F * torch.exp(-2j * torch.pi * (x[None, :, :2] * t[:, None, :]).sum(-1))


def test_rotate_map_moves_the_fourier_transform_alike():
    """rotate_map(v, M)(x) = v(x @ M) in real space is v's Hartley transform read at k @ M."""
    v = torch.as_tensor(make_volume("homogeneous", None, D))
    M = random_rotations(1, torch.Generator().manual_seed(2))[0]
    k = SliceLattice(D).coords[::7] * 0.5
    a = VolumeSlicer.from_map(rotate_map(v, M))(k)
    b = VolumeSlicer.from_map(v)(k @ M)
    assert float((a - b).norm() / b.norm()) < 0.05
    assert rotation_angle(M) > 10   # a real rotation
