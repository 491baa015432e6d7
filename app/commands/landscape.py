"""The conformational landscape in volume space: states and volume PCs of every particle.

As cryoDRGN's analyze_landscape and analyze_landscape_full: k-means centres of the latents (the
sketch, 1000 by default) are decoded, masked (the union of the thresholded maps, dilated with a
soft edge, or --mask) and reduced by PCA; agglomerative clustering of the maps gives the states.
Each particle gets the state of its nearest centre and volume-PC coordinates from a small MLP
z -> volume PCs. Writes OUT/landscape.npz (state [N], volume_pcs [N, k], the sketch), the
states' maps and maps along volume PC1/PC2 (MRC + ChimeraX .cxc), mask.mrc, plots and
summary.json. Results are cached in RUN/analysis_cache, for a later call (or the explorer).
"""
from __future__ import annotations

from cryoscape.app.commands._common import positive_int


def add_args(parser):
    from cryoscape.core.analysis.landscape import LINKAGES

    parser.add_argument("run", help="run directory (cryoscape or cryoDRGN)")
    parser.add_argument("-o", "--outdir", help="output folder (default RUN/landscape.EPOCH)")
    parser.add_argument("--epoch", type=int, help="epoch (default: the latest)")
    parser.add_argument("--sketch", type=positive_int, default=1000,
                        help="maps decoded: k-means centres of z (default 1000; at most N/10)")
    parser.add_argument("--states", type=positive_int, default=5, metavar="M",
                        help="states: clusters of the maps (default 5)")
    parser.add_argument("--linkage", choices=LINKAGES, default="ward",
                        help="agglomerative clustering linkage (default ward)")
    parser.add_argument("--mask", help="mask (.mrc at the decoding box; default: the union of "
                                       "the thresholded maps, dilated, soft-edged)")
    parser.add_argument("-D", "--box", type=positive_int, dest="D",
                        help="decode at this box (default: the run's, at most 64)")
    parser.add_argument("--pcs", type=positive_int, default=10, metavar="K",
                        help="volume principal components kept (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-amp", dest="amp", action="store_false",
                        help="decode the sketch in float32 (default: bfloat16 where the CPU or "
                             "GPU has it natively, as training: 3-4x faster, maps within 0.3%%)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the first GPU "
                        "if there is one, else cpu)")


def main(args):
    from pathlib import Path

    from cryoscape.app.commands._common import check_outputs
    from cryoscape.core.analysis.cache import analysis_cache_dir
    from cryoscape.core.analysis.landscape import compute_landscape, write_landscape
    from cryoscape.core.analysis.report import resolve_epoch
    from cryoscape.core.device import select_device
    from cryoscape.core.run import Run

    run = Run.open(args.run)
    run.device = select_device(args.device)
    epoch = resolve_epoch(run, args.epoch)
    out = Path(args.outdir or Path(run.path) / f"landscape.{'final' if epoch is None else epoch}")
    check_outputs([out], [args.mask], folder=True)
    res = compute_landscape(run, epoch, sketch=args.sketch, states=args.states,
                            linkage=args.linkage, mask=args.mask, box=args.D, pcs=args.pcs,
                            seed=args.seed, amp=args.amp, cache_dir=analysis_cache_dir(run))
    s = write_landscape(res, run, out)
    occ = ", ".join(f"{i}: {c}" for i, c in enumerate(s["occupancy"]))
    print(f"cryoscape landscape: {s['sketch']} maps of {s['box']}^3, {len(s['occupancy'])} "
          f"states (particles {occ}); volume PCs from z: held-out R^2 "
          f"{s['regressor_r2_heldout']:.3f}; decoder {s['decoder_flop_per_s'] / 1e9:.1f} "
          f"GFLOP/s ({s['precision']}); written to {out}")
    return 0
