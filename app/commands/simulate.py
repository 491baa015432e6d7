"""Simulate a particle dataset with ground truth from a built-in model, maps or an atomic model.

Writes DIR/particles.mrcs, particles.star (RELION 3.1, poses + CTF), poses.pkl and ctf.pkl
(cryoDRGN), truth.npz (per-image coordinate or state, rotations, shifts) and, with
--save-volumes, DIR/volumes/ (ground-truth maps and coords.txt). Particles follow RELION's
contrast (protein white). SNR: variance of the noise-free images over that of the noise.
With --tilt-deg, tilt pairs (the paper's appendix D.2): every particle imaged again with the
stage tilted about x, in DIR/particles_tilt.mrcs, particles_tilt.star and poses_tilt.pkl.
"""
from __future__ import annotations

KINDS = ("homogeneous", "linear", "2d", "circular", "discrete")


def add_args(parser):
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", choices=KINDS,
                     help="built-in multi-domain model: linear/circular 1D motion, 2D motion, "
                          "K discrete states or homogeneous")
    src.add_argument("--volume", nargs="+", metavar="MAP",
                     help="MRC map(s); several maps are discrete states drawn uniformly")
    src.add_argument("--pdb", metavar="FILE", help="atomic model (PDB/mmCIF), atoms as Gaussians")
    parser.add_argument("--states", type=int, default=10, help="K for --model discrete (10)")
    parser.add_argument("-n", type=int, required=True, help="number of images")
    parser.add_argument("-D", "--box", type=int, dest="D",
                        help="box size in px (required for --model/--pdb; maps are "
                             "Fourier-resampled to it)")
    parser.add_argument("--apix", type=float,
                        help="pixel size in A (default: 256 A / D for models, the map's header, "
                             "1.5 for --pdb)")
    parser.add_argument("--snr", type=float, help="signal-to-noise ratio (default: no noise)")
    parser.add_argument("--ctf", action="store_true",
                        help="apply a CTF: 300 kV, Cs 2.7, w 0.1, random defocus and astigmatism")
    parser.add_argument("--defocus", type=float, nargs=2, default=(1.0, 3.0),
                        metavar=("MIN", "MAX"), help="defocus range in um (1 3)")
    parser.add_argument("--max-shift", type=float, default=0.0, metavar="PX",
                        help="shifts uniform in [-PX, PX] pixels per axis (0)")
    parser.add_argument("--tilt-deg", type=float, metavar="DEG",
                        help="also image every particle tilted by DEG about x (tilt pairs; "
                             "same conformation, shift and CTF, its own noise)")
    parser.add_argument("--save-volumes", action="store_true", help="write ground-truth maps")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("-o", "--outdir", required=True, help="output folder")


def _read_maps(paths, D, apix):
    import numpy as np
    from cryoscape.core.errors import CryoscapeError
    from cryoscape.core.fourier import fourier_resample
    from cryoscape.core.io.mrc import read_mrc

    maps, sizes = [], []
    for p in paths:
        v, a = read_mrc(p)
        if v.ndim != 3 or len(set(v.shape)) != 1:
            raise CryoscapeError(f"{p}: not a cubic 3D map (shape {v.shape})")
        maps.append(v)
        sizes.append((v.shape[-1], a))
    if len(set(sizes)) != 1:
        raise CryoscapeError(f"maps differ in box or voxel size: {sorted(set(sizes))}")
    D0, a0 = sizes[0]
    apix = a0 if apix is None else apix
    if D is not None and D != D0:
        return np.stack([fourier_resample(v, D) for v in maps]), apix * D0 / D
    return np.stack(maps), apix


def main(args):
    from cryoscape.core.simulate import simulate, volume_from_atomic_model

    if args.model:
        source, apix = args.model, args.apix
    elif args.volume:
        source, apix = _read_maps(args.volume, args.D, args.apix)
    else:
        from cryoscape.core.errors import CryoscapeError
        if args.D is None:
            raise CryoscapeError("--pdb needs a box size -D")
        apix = 1.5 if args.apix is None else args.apix
        source = volume_from_atomic_model(args.pdb, args.D, apix)
    ds = simulate(source, args.n, args.outdir, D=args.D if args.model or args.pdb else None,
                  apix=apix, snr=args.snr, ctf=args.ctf, max_shift=args.max_shift,
                  states=args.states, save_volumes=args.save_volumes, seed=args.seed,
                  defocus=(args.defocus[0] * 1e4, args.defocus[1] * 1e4),
                  tilt_deg=args.tilt_deg, progress=True)
    noise = f", SNR {ds.snr:g} (noise sd {ds.noise_std:.4g})" if ds.snr else ", no noise"
    tilt = "" if ds.tilt_deg is None else f", each also tilted by {ds.tilt_deg:g} deg"
    print(f"simulate: {ds.n} images of {ds.kind}, D={ds.D}, {ds.apix:.4g} A/px{noise}{tilt}"
          f" -> {ds.path}")
    return 0
