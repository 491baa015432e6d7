"""Soft-edged masks of maps: a threshold, a dilation by a distance in A and a raised-cosine
edge, as RELION's relion_mask_create (--ini_threshold, --extend_inimask, --width_soft_edge)
and cryoDRGN's gen_mask make them, but with distances measured exactly (a Euclidean distance
transform in A, so the dilation is a sphere, not the diamond of repeated binary dilations).
"""
from __future__ import annotations

import numpy as np
from cryoscape.core.errors import CryoscapeError


def auto_threshold(vol) -> float:
    """Half the 99.99th percentile of the map's values (cryoDRGN gen_mask's default): the
    molecule's strong density, robust to a few hot voxels."""
    return float(np.percentile(np.asarray(vol), 99.99) / 2)


def soft_mask(inside, apix: float = 1.0, dilate: float = 0.0, soft_edge: float = 0.0
              ) -> np.ndarray:
    """A float32 mask of `inside`'s shape: 1 within `dilate` A of the `inside` voxels, a
    raised cosine 0.5 (1 + cos(pi x)) falling to 0 over the next `soft_edge` A, 0 beyond."""
    from scipy.ndimage import distance_transform_edt

    inside = np.asarray(inside, dtype=bool)
    if not inside.any():
        raise CryoscapeError("the mask is empty: no voxel is inside")
    if dilate < 0 or soft_edge < 0 or apix <= 0:
        raise CryoscapeError(f"dilation ({dilate} A) and soft edge ({soft_edge} A) must be >= 0"
                             f" and the voxel size ({apix} A) > 0")
    if dilate == 0 and soft_edge == 0:
        return inside.astype(np.float32)
    dist = distance_transform_edt(~inside, sampling=float(apix))  # A to the nearest inside
    x = (dist - dilate) / soft_edge if soft_edge > 0 else (dist > dilate).astype(np.float64)
    return (0.5 * (1 + np.cos(np.pi * np.clip(x, 0, 1)))).astype(np.float32)


def map_mask(vol, apix: float, threshold: float | None = None, dilate: float = 25.0,
             soft_edge: float = 15.0, lowpass_A: float | None = None
             ) -> tuple[np.ndarray, float]:
    """(soft mask of the map `vol` [D, D, D], the threshold used). The map is low-passed to
    `lowpass_A` A first if given; `threshold` None: `auto_threshold` of that map."""
    from cryoscape.core.decode import lowpass

    vol = np.asarray(vol, dtype=np.float32)
    if lowpass_A:
        vol = lowpass(vol, lowpass_A, apix)
    t = auto_threshold(vol) if threshold is None else float(threshold)
    if not (vol >= t).any():
        raise CryoscapeError(f"threshold {t:.4g} is above the map's maximum "
                             f"{float(vol.max()):.4g}: the mask would be empty")
    return soft_mask(vol >= t, apix, dilate, soft_edge), t
