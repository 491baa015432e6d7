"""Synthetic cryo-EM datasets with ground truth: built-in heterogeneous models, atomic models,
projection by the Fourier slice theorem, CTF, shifts and noise at a given SNR."""
from __future__ import annotations

from cryoscape.core.simulate.atomic import atoms_to_volume, read_atoms, volume_from_atomic_model
from cryoscape.core.simulate.dataset import SimulatedDataset, simulate
from cryoscape.core.simulate.projection import form_images, project, project_batch
from cryoscape.core.simulate.volumes import (
    KINDS,
    MODEL_BOX_A,
    blob_slices,
    draw_coords,
    make_volume,
    make_volumes,
    model_blobs,
)

__all__ = ["KINDS", "MODEL_BOX_A", "SimulatedDataset", "atoms_to_volume", "blob_slices",
           "draw_coords", "form_images", "make_volume", "make_volumes", "model_blobs", "project",
           "project_batch", "read_atoms", "simulate", "volume_from_atomic_model"]
