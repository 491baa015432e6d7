"""Simulate a small heterogeneous dataset, train on it and watch the latent space form live.

The dataset (about a thousand noisy projections of a molecule in three conformations, with
known poses, as a RELION .star and its .mrcs) is written to OUTDIR/data once and reused; each
demo trains a new numbered run, OUTDIR/run-001, run-002, ..., in the explorer's Training panel.
The latent scatter refreshes after every epoch, with the structure at the first cluster's
centre; click a point at any time to see its structure.
"""
from __future__ import annotations

from pathlib import Path


def add_args(parser):
    parser.add_argument("-o", "--outdir", default="cryoscape-demo", help="folder for the demo")
    parser.add_argument("--model", default="discrete",
                        choices=["discrete", "linear", "circular", "2d"],
                        help="heterogeneity: 3 discrete states or a continuous motion")
    parser.add_argument("-n", "--images", type=int, default=1000, help="number of images")
    parser.add_argument("-D", "--box", type=int, default=32, help="box size in pixels")
    parser.add_argument("--snr", type=float, default=5.0, help="signal-to-noise ratio")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs")
    parser.add_argument("--zdim", type=int, default=2, help="latent dimension")
    parser.add_argument("--width", type=int, default=64, help="MLP width (encoder and decoder)")
    parser.add_argument("--layers", type=int, default=3, help="decoder depth (encoder: 2)")
    parser.add_argument("--no-train", action="store_true",
                        help="only simulate the dataset and fill in the Training panel")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for training (the rest keep the explorer responsive)")
    parser.add_argument("--exit-after-first-epoch", action="store_true",
                        help="quit once the first epoch's latents are on screen (benchmarks)")


def simulate_demo_data(args) -> Path:
    """The demo dataset in OUTDIR/data (simulated once, then reused: said so)."""
    from cryoscape.core.simulate import simulate

    data = Path(args.outdir) / "data"
    if (data / "particles.star").exists() and (data / "particles.mrcs").exists():
        print(f"using the dataset simulated before in {data} (delete it to simulate anew)")
    else:
        print(f"simulating {args.images} images ({args.model}, D={args.box}) into {data}")
        simulate(args.model, args.images, data, D=args.box, snr=args.snr, states=3,
                 seed=0, progress=True)
    return data


def main(args):
    import time

    from cryoscape.app.gui.launch import run_demo

    t_start = time.perf_counter()
    return run_demo(args, simulate_demo_data(args), t_start)
