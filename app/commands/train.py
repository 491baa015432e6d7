"""Train a cryoDRGN model: a VAE (heterogeneous) or, with --zdim 0, a decoder; with known poses or
with --pose-search (ab initio: poses searched, then refined; pose.N.pkl every epoch).

PARTICLES is a .mrcs/.mrc stack, a .txt list of stacks, a RELION .star or a cryoSPARC .cs file;
poses and CTF come from the .star/.cs unless --poses/--ctf give cryoDRGN pickles. The run
directory reads like a cryoDRGN one (config.yaml, weights.N.pkl, z.N.pkl) plus checkpoint.pt,
metrics.jsonl and status.json. Create RUN/PAUSE to stop after the current epoch; SIGTERM or
Ctrl-C stops after the current batch with a checkpoint; --resume continues exactly.
"""
from __future__ import annotations

from cryoscape.app.commands._common import add_pose_ctf_args, check_outputs


def add_args(parser):
    parser.add_argument("particles", nargs="?", help="particle stack (.mrcs/.txt/.star/.cs); "
                        "not needed with --resume")
    parser.add_argument("-o", "--outdir", required=True, metavar="RUN", help="run directory")
    add_pose_ctf_args(parser)
    parser.add_argument("--zdim", type=int, help="latent dimension; 0 = homogeneous "
                        "(default: 8)")
    parser.add_argument("-n", "--num-epochs", type=int, help="epochs (default: 20; with "
                        "--pose-search at least 10 after the search)")
    parser.add_argument("-b", "--batch-size", type=int, help="minibatch size (default: 8)")
    parser.add_argument("--lr", type=float,
                        help="Adam learning rate (default: 1e-4; 1e-3 with --pose-search)")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"),
                        help="the learning rate through the run: constant, or decayed along a "
                             "half cosine to 0 by the last epoch (default: constant)")
    parser.add_argument("--lr-warmup", type=float, metavar="EPOCHS",
                        help="epochs over which the learning rate rises linearly from 0 "
                             "(default: 0)")
    parser.add_argument("--weight-average", type=float, metavar="EPOCHS",
                        help="save the weights (and the latents they encode) as their moving "
                             "average over about EPOCHS epochs of steps (with --pose-search, "
                             "of the epochs after the search); 0: the last step's weights "
                             "(default: 2 with known poses, 0 with --pose-search)")
    parser.add_argument("--wd", type=float, help="Adam weight decay (default: 0)")
    parser.add_argument("--beta", type=float, help="KL weight (default: 1/zdim, as cryoDRGN)")
    parser.add_argument("--beta-warmup", type=float, metavar="EPOCHS",
                        help="epochs over which the KL weight rises linearly from 0 (default: "
                             "0)")
    parser.add_argument("--preset", choices=("cryodrgn", "paper", "abinit"),
                        help="architecture defaults: cryoDRGN 4.3.1's (3x1024, gaussian, "
                        "fourier; the default), the paper's (10x128, geom_lowf, hartley) or "
                        "cryoDRGN's ab initio (3x256; the default with --pose-search)")
    g = parser.add_argument_group("model")
    g.add_argument("--enc-dim", type=int, help="encoder hidden width (default: 1024)")
    g.add_argument("--enc-layers", type=int, help="encoder hidden layers (default: 3)")
    g.add_argument("--dec-dim", type=int, help="decoder hidden width (default: 1024)")
    g.add_argument("--dec-layers", type=int, help="decoder hidden layers (default: 3)")
    g.add_argument("--encode-mode", choices=("resid", "mlp"), help="encoder MLP kind "
                   "(default: resid)")
    g.add_argument("--enc-mask", type=int, help="encoder input radius in pixels "
                   "(default: D/2; -1 = whole image)")
    g.add_argument("--pe-type", choices=("geom_ft", "geom_full", "geom_lowf", "geom_nohighf",
                                         "linear_lowf", "gaussian", "none"),
                   help="positional encoding (default: gaussian)")
    g.add_argument("--pe-dim", type=int, help="frequencies in the encoding (default: D/2)")
    g.add_argument("--feat-sigma", type=float, help="scale of Gaussian features (default: 0.5)")
    g.add_argument("--domain", choices=("fourier", "hartley"),
                   help="decoder domain (default: fourier)")
    g.add_argument("--activation", choices=("relu", "leaky_relu"), help="(default: relu)")
    g = parser.add_argument_group("ab initio (no poses: search them as the paper, then refine)")
    g.add_argument("--pose-search", action="store_true", default=None,
                   help="find the poses (ab initio); poses in a .star/.cs are ignored; the "
                        "architecture defaults to 3x256 (as cryoDRGN's ab initio), --lr to 1e-3")
    g.add_argument("--pretrain-epochs", type=int,
                   help="epochs with random poses before the first search (default: 1, or as "
                        "many as 3000 images take where there are fewer)")
    g.add_argument("--search-epochs", type=int,
                   help="epochs whose poses are searched (default: 4, with --zdim > 0: 8, or "
                        "as many as 12000 images take where there are fewer, with --zdim > 0 "
                        "12000 per class); later epochs refine the poses by gradient descent")
    g.add_argument("--search-chunk", type=int,
                   help="images searched with one frozen decoder (default: 256)")
    g.add_argument("--search-method", choices=("beam", "bnb"),
                   help="keep the best K candidates per round, or the paper's branch and "
                        "bound (default: beam)")
    g.add_argument("--search-classes", type=int,
                   help="heterogeneous (--zdim > 0): volumes each image is searched against "
                        "while the poses are searched, as classes of a 3D classification "
                        "(default: 2)")
    g.add_argument("--beam", type=int, help="candidates kept per image and round (default: 8)")
    g.add_argument("--t-extent", type=float,
                   help="largest shift searched, +- px (default: scaled with the box)")
    g.add_argument("--no-pose-sgd", dest="pose_sgd", action="store_false", default=None,
                   help="keep searching every epoch instead of refining by gradient descent")
    g.add_argument("--pose-lr", type=float,
                   help="learning rate of the pose refinement (default: 1e-3)")
    g = parser.add_argument_group("tilt pairs (the paper's appendix D.2)")
    g.add_argument("--tilt", metavar="TILT_STACK",
                   help="the particles imaged again with the stage tilted about x (.mrcs/.txt/"
                        ".star/.cs, one image per particle in the same order; --ind applies; "
                        "its CTF, else the particles'; the particles' shifts): both images in "
                        "the loss and the pose search, a two-image encoder")
    g.add_argument("--tilt-deg", type=float,
                   help="the stage tilt of TILT_STACK in degrees (default: 45)")
    g = parser.add_argument_group("data")
    g.add_argument("--ind", help="index .pkl of the particles to use")
    g.add_argument("--datadir", help="folder of the stacks a .star/.cs refers to")
    g.add_argument("--lazy", action="store_true", default=None,
                   help="read images per batch (bounded memory) instead of all at once")
    g.add_argument("--workers", type=int, metavar="N",
                   help="with --lazy, processes that read and preprocess the next batches while "
                        "one trains (default: one core less than this process's share, at "
                        "most 4; 0 = read in the training process)")
    g.add_argument("--downsample", type=int, metavar="D",
                   help="Fourier-crop the images to a box of D px as they are read (pixel "
                        "size, shifts and CTF follow; the run is a D px one)")
    g.add_argument("--uninvert-data", dest="invert_data", action="store_false", default=None,
                   help="do not invert the contrast (default: decided from the data: inverted "
                        "with a CTF, RELION's convention; without one only if the protein is dark)")
    g.add_argument("--no-window", dest="window", action="store_false", default=None,
                   help="no real-space window")
    g.add_argument("--window-r", type=float, help="window radius (default: 0.85)")
    g.add_argument("--norm", type=float, nargs=2, metavar=("SHIFT", "SCALE"),
                   help="data normalisation (default: 0 and the std of the data)")
    g = parser.add_argument_group("run")
    g.add_argument("--seed", type=int, help="random seed (default: 0)")
    g.add_argument("--checkpoint-minutes", type=float,
                   help="also checkpoint inside an epoch this often (default: 10)")
    g.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    g.add_argument("--device", help="cpu, cuda or cuda:N (default: the first GPU if there is "
                   "one, else cpu; under torchrun each process takes its local rank's GPU)")
    g.add_argument("--no-amp", dest="amp", action="store_false", default=None,
                   help="float32 throughout (default: mixed precision, bf16 where the hardware "
                        "has it natively: Ampere and later GPUs, CPUs with AVX512-BF16 or AMX; "
                        "fp16 with loss scaling on older GPUs)")
    g.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the model (GPU only)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in RUN from its last checkpoint (-n may raise the "
                        "number of epochs)")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")


FIELDS = ("poses", "ctf", "zdim", "num_epochs", "batch_size", "lr", "lr_schedule", "lr_warmup",
          "weight_average", "wd", "beta", "beta_warmup", "enc_dim", "enc_layers", "dec_dim",
          "dec_layers", "encode_mode", "enc_mask", "pe_type", "pe_dim", "feat_sigma", "domain",
          "activation", "ind", "datadir", "lazy", "workers", "downsample", "invert_data", "window",
          "window_r", "norm", "seed", "checkpoint_minutes", "threads", "device", "amp", "compile",
          "pose_search", "pretrain_epochs", "search_epochs", "search_chunk", "search_method",
          "search_classes", "beam", "t_extent", "pose_sgd", "pose_lr", "tilt", "tilt_deg")


def command_line(args) -> list[str]:
    """The command as parsed (canonical spelling of every option given), for provenance."""
    out = ["cryoscape", "train", args.particles]
    for k in ("preset", *FIELDS):
        v = getattr(args, k)
        flag = "--" + k.replace("_", "-")
        if v is None:
            continue
        if isinstance(v, bool):
            out.append({"invert_data": "--uninvert-data", "window": "--no-window",
                        "amp": "--no-amp", "pose_sgd": "--no-pose-sgd"}.get(k, flag))
        else:
            out += [flag, *map(str, v if isinstance(v, (list, tuple)) else [v])]
    return out + ["-o", args.outdir]


def main(args):
    from cryoscape.core.errors import CryoscapeError
    from cryoscape.core.train import TrainConfig, train
    from cryoscape.core.train.distributed import env_group

    check_outputs([args.outdir], folder=True)
    values = {k: getattr(args, k) for k in FIELDS}
    if args.resume:
        overrides = {k: v for k, v in values.items() if v is not None}
        if args.particles:
            overrides["particles"] = args.particles
        cfg = TrainConfig.from_dict({"particles": "", **overrides}).abspaths()
        overrides.update({k: getattr(cfg, k) for k in ("particles", "poses", "ctf", "ind",
                                                       "datadir", "tilt") if k in overrides})
        result = train(None, args.outdir, resume=True, progress=args.progress,
                       overrides=overrides)
    else:
        if not args.particles:
            raise CryoscapeError("give PARTICLES (or --resume to continue a run)")
        preset = args.preset or ("abinit" if args.pose_search else "cryodrgn")
        cfg = TrainConfig.with_preset(preset, particles=args.particles,
                                      command_line=command_line(args), **values)
        result = train(cfg.abspaths(), args.outdir, progress=args.progress)
    if env_group().main:            # under torchrun, rank 0 speaks for the run
        print(f"cryoscape train: {result['state']} at epoch {result['epoch']}"
              + (f", batch {result['batch']}" if result["batch"] else "") + f" ({args.outdir})")
    return 0
