"""Decode latent points of a run into volume series on disk (MRC + ChimeraX script)."""
from __future__ import annotations

import os

import numpy as np
from cryoscape.core.decode import maps_per_call
from cryoscape.core.export import VolumeSeries, make_outdir, write_volume_series


def decode_iter(run, z, D: int | None = None, epoch: int | None = None,
                batch: int | None = None):
    """Yield volumes [D, D, D] decoded at each row of z, `batch` per decoder call (default:
    `decode.maps_per_call`, so memory stays bounded)."""
    z = np.atleast_2d(np.asarray(z, dtype=np.float32))
    batch = batch or maps_per_call(D or run.D)
    for s in range(0, len(z), batch):
        yield from run.decode(z[s:s + batch], D=D, epoch=epoch)


def write_maps(run, z, outdir: str | os.PathLike, D: int | None = None,
               epoch: int | None = None, prefix: str = "vol_", progress: bool = True,
               desc: str = "decoding") -> VolumeSeries:
    """Decode z [M, zdim] with the run's decoder and write them as a volume series with a
    ChimeraX script; also writes the z themselves (`z_values.txt`, one row per map)."""
    z = np.atleast_2d(np.asarray(z, dtype=np.float32))
    outdir = make_outdir(outdir)
    wrap = None
    if progress:
        from tqdm import tqdm

        def wrap(it):
            return tqdm(it, total=len(z), desc=desc, unit="map")
    series = write_volume_series(decode_iter(run, z, D=D, epoch=epoch), outdir,
                                 apix=run.voxel_size(D), prefix=prefix, progress=wrap)
    from cryoscape.core.io.atomic import atomic_open

    with atomic_open(outdir / "z_values.txt", "w") as f:
        np.savetxt(f, z, fmt="%.6g")
    return series
