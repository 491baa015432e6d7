"""Decode volumes from a trained run (cryoscape or cryoDRGN) at given latent coordinates.

One z (or a homogeneous run) writes OUT as one .mrc; several (a --z-file, or --z with a
multiple of zdim values) write OUT/vol_000.mrc, vol_001.mrc, ... in the order given (0-based, as
cryoDRGN and `analyze` number maps). -D decodes a smaller box quickly (a low-passed preview;
voxel size scaled to match). Maps carry the run's voxel size (override with --apix, which
--lowpass then uses too) and are written atomically.
"""
from __future__ import annotations

from cryoscape.app.commands._common import check_outputs, positive_float, positive_int


def add_args(parser):
    parser.add_argument("run", nargs="?", help="run directory (or use -c/--weights)")
    parser.add_argument("-o", "--output", required=True,
                        help="output .mrc (one volume) or directory (several)")
    parser.add_argument("--epoch", type=int, help="weights of this epoch (default: final)")
    z = parser.add_mutually_exclusive_group()
    z.add_argument("--z", type=float, nargs="+", metavar="Z",
                   help="one latent vector (zdim values), or several concatenated")
    z.add_argument("--z-file", metavar="F", help="latents, one per row (.txt or .npy)")
    parser.add_argument("-D", "--box", type=int, help="box size of the maps (even; default: "
                                                      "the training box)")
    parser.add_argument("--flip", action="store_true", help="flip the hand of the maps")
    parser.add_argument("--invert", action="store_true", help="invert the contrast")
    parser.add_argument("--lowpass", type=positive_float, metavar="A",
                        help="low-pass to A Ångström")
    parser.add_argument("--apix", type=positive_float,
                        help="voxel size of the training box in Å (default: from the run, "
                             "else 1); --lowpass uses it too")
    parser.add_argument("--prefix", default="vol_", help="file name prefix (default: vol_)")
    parser.add_argument("-c", "--config", help="config.yaml of a bare checkpoint (with --weights)")
    parser.add_argument("--weights", help="a bare checkpoint (with -c)")
    parser.add_argument("-b", "--batch", type=positive_int, default=4,
                        help="volumes decoded together (default: 4)")
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads (default: torch's choice)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the first GPU "
                        "if there is one, else cpu)")


def _latents(args, zdim: int):
    import numpy as np
    from cryoscape.core.errors import CryoscapeError, InputFileError

    if zdim == 0:
        if args.z is not None or args.z_file:
            raise CryoscapeError("the run is homogeneous (zdim 0): drop --z/--z-file")
        return None
    if args.z is not None:
        z = np.asarray(args.z, dtype=np.float32)
        if len(z) % zdim:
            raise CryoscapeError(f"--z got {len(z)} values; the run's zdim is {zdim}")
        return _finite(z.reshape(-1, zdim), "--z")
    if not args.z_file:
        raise CryoscapeError(f"give --z (zdim {zdim} values) or --z-file")
    try:
        z = (np.load(args.z_file) if args.z_file.endswith(".npy")
             else np.loadtxt(args.z_file, ndmin=2)).astype(np.float32)
    except (OSError, ValueError) as e:
        raise InputFileError(args.z_file, f"cannot read latents ({e})") from None
    if z.ndim == 1:  # one value per line (zdim 1), or one latent
        z = z[:, None] if zdim == 1 else z[None]
    if z.ndim != 2 or z.shape[1] != zdim or not len(z):
        raise InputFileError(args.z_file, f"holds latents of shape {z.shape}; the run needs "
                                          f"rows of zdim {zdim} values, one latent per row")
    return _finite(z, args.z_file)


def _finite(z, where: str):
    """z, refused if it holds NaN or inf (the decoder would turn them into all-NaN maps)."""
    import numpy as np
    from cryoscape.core.errors import InputFileError

    bad = ~np.isfinite(z).all(axis=1)
    if bad.any():
        raise InputFileError(where, f"latent {int(np.argmax(bad))} (0-based) holds NaN or "
                                    f"inf ({bad.sum()} of {len(z)} latents do)")
    return z


def main(args):
    import os
    from pathlib import Path

    import torch
    from cryoscape.core.decode import apply_map_options
    from cryoscape.core.device import select_device
    from cryoscape.core.errors import CryoscapeError
    from cryoscape.core.io.mrc import write_mrc
    from cryoscape.core.run import Run
    from tqdm import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.weights or args.config:
        if not (args.weights and args.config):
            raise CryoscapeError("a bare checkpoint needs both -c CONFIG and --weights")
        run = Run.from_files(args.config, args.weights)
    elif args.run:
        run = Run.open(args.run)
    else:
        raise CryoscapeError("give a RUN directory, or -c CONFIG with --weights")
    run.device = select_device(args.device)
    if args.box is not None and (args.box % 2 or not 2 <= args.box <= run.D):
        raise CryoscapeError(f"-D must be even and at most the training box {run.D}")
    z = _latents(args, run.zdim)
    apix = (args.apix or run.apix) * run.D / (args.box or run.D)
    out = Path(args.output)
    several = z is not None and len(z) > 1
    if several and out.suffix == ".mrc":
        raise CryoscapeError(f"{len(z)} volumes need an output directory, not {out}")
    check_outputs([out], [args.z_file, args.config, args.weights], folder=several)
    run.model(args.epoch)  # missing or refused weights fail before anything is written

    def decode(zs):  # map options at the maps' own voxel size (--apix included)
        vols = run.decode(zs, D=args.box, epoch=args.epoch)
        return apply_map_options(vols, apix, args.flip, args.invert, args.lowpass)

    if not several:
        write_mrc(out, decode(z)[0], apix=apix)
        print(f"cryoscape eval-vol: {out} ({args.box or run.D}^3, {apix:.4g} Å/px)")
        return 0
    os.makedirs(out, exist_ok=True)
    with tqdm(total=len(z), unit="vol", desc="eval-vol") as bar:
        for s in range(0, len(z), args.batch):
            vols = decode(z[s:s + args.batch])
            for i, v in enumerate(vols, start=s):
                write_mrc(out / f"{args.prefix}{i:03d}.mrc", v, apix=apix)
            bar.update(len(vols))
    print(f"cryoscape eval-vol: {len(z)} volumes in {out} ({args.box or run.D}^3, "
          f"{apix:.4g} Å/px)")
    return 0
