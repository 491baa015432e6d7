"""Compare the latent space across epochs to choose one: drift, cluster and map stability.

Plots (PNG) against epoch: Procrustes drift of the latents and the R^2 of a linear map onto
the last epoch's; adjusted Rand index of k-means clusters; FSC between maps decoded at the
last epoch's k-means centres with each epoch's decoder; the loss curve.
"""
from __future__ import annotations


def add_args(parser):
    parser.add_argument("run", help="run directory (cryoscape or cryoDRGN)")
    parser.add_argument("--k", type=int, default=10, help="k-means clusters (default 10)")
    parser.add_argument("-D", "--box", type=int, dest="D", default=32,
                        help="box for the compared maps (default 32)")
    parser.add_argument("--no-maps", action="store_true", help="skip decoding maps")
    parser.add_argument("--max-particles", type=int, default=20000,
                        help="random subset of particles compared (default 20000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--outdir", help="folder for the plots (default RUN/convergence)")


def main(args):
    from pathlib import Path

    from cryoscape.core.analysis.convergence import convergence, plot_convergence
    from cryoscape.core.export import make_outdir
    from cryoscape.core.run import Run

    run = Run.open(args.run)
    out = make_outdir(args.outdir or Path(run.path) / "convergence")
    res = convergence(run, k=args.k, D=args.D, maps=not args.no_maps, seed=args.seed,
                      max_particles=args.max_particles)
    files = plot_convergence(res, out)
    res.to_json(out / "convergence.json")
    print("epoch  drift  ARI   maps")
    for i, e in enumerate(res.epochs):
        m = res.map_fsc_final[i] if res.map_fsc_final else float("nan")
        print(f"{e:5d}  {res.drift_final[i]:.3f}  {res.ari_final[i]:.2f}  {m:.3f}")
    print(f"convergence: plots in {out} ({', '.join(f.name for f in files)})")
    return 0
