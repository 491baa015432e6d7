"""Rotation conventions: RELION ZYZ Euler angles, cryoSPARC axis-angle, quaternions.

Inside cryoscape a pose rotation R [N, 3, 3] acts on row vectors of lattice coordinates,
`coords_3d = coords_2d @ R`, exactly the matrices of cryoDRGN's pose pickles. Conversions use
scipy's well-tested Rotation; each function states its convention.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def relion_euler_to_matrix(euler_deg) -> np.ndarray:
    """RELION (rlnAngleRot, rlnAngleTilt, rlnAnglePsi) in degrees [N, 3] -> R [N, 3, 3].

    RELION's matrix is the intrinsic ZYZ rotation Rz(rot) Ry(tilt) Rz(psi) transposed; with
    cryoDRGN's flip of the image y axis that is R = (Rz(rot) Ry(tilt) Rz(psi))^T.
    """
    e = np.asarray(euler_deg, dtype=np.float64).reshape(-1, 3)
    m = Rotation.from_euler("ZYZ", e, degrees=True).as_matrix()
    return np.ascontiguousarray(m.transpose(0, 2, 1)).astype(np.float32)


def matrix_to_relion_euler(R) -> np.ndarray:
    """Inverse of relion_euler_to_matrix: [N, 3, 3] -> (rot, tilt, psi) degrees [N, 3]."""
    R = np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)
    import warnings
    with warnings.catch_warnings():  # gimbal lock at tilt 0 or 180 is fine: psi absorbs rot
        warnings.simplefilter("ignore", UserWarning)
        return Rotation.from_matrix(R.transpose(0, 2, 1)).as_euler("ZYZ", degrees=True)


def cryosparc_pose_to_matrix(rotvec) -> np.ndarray:
    """cryoSPARC `alignments3D/pose` (axis-angle, radians) [N, 3] -> R [N, 3, 3].

    cryoSPARC stores the rotation that takes the map to the image frame; cryoscape's R is its
    transpose (as cryoDRGN's parse_pose_csparc does).
    """
    m = Rotation.from_rotvec(np.asarray(rotvec, dtype=np.float64).reshape(-1, 3)).as_matrix()
    return np.ascontiguousarray(m.transpose(0, 2, 1)).astype(np.float32)


def matrix_to_cryosparc_pose(R) -> np.ndarray:
    """Inverse of cryosparc_pose_to_matrix: R [N, 3, 3] -> axis-angle [N, 3] in radians."""
    R = np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)
    return Rotation.from_matrix(R.transpose(0, 2, 1)).as_rotvec().astype(np.float32)


def quaternion_to_matrix(q) -> np.ndarray:
    """Unit quaternions (w, x, y, z) [N, 4] -> rotation matrices [N, 3, 3] (column-vector form)."""
    q = np.asarray(q, dtype=np.float64).reshape(-1, 4)
    return Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix().astype(np.float32)


def matrix_to_quaternion(R) -> np.ndarray:
    """Rotation matrices [N, 3, 3] -> unit quaternions (w, x, y, z) [N, 4] with w >= 0."""
    q = Rotation.from_matrix(np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)).as_quat()
    q = q[:, [3, 0, 1, 2]]
    return (q * np.where(q[:, :1] < 0, -1, 1)).astype(np.float32)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """n rotation matrices drawn uniformly (Haar measure) on SO(3)."""
    q = rng.standard_normal((n, 4))
    return quaternion_to_matrix(q / np.linalg.norm(q, axis=1, keepdims=True))
