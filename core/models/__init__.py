"""Models: positional encodings, MLPs, volume decoders and the VAE; `build_model` from config.

`model_args` uses cryoDRGN's config keys (qlayers, qdim, players, pdim, zdim, pe_type, pe_dim,
feat_sigma, domain, activation, enc_mask, encode_mode). Tilt-pair runs (the paper's D.2) add
`tilt_emb_dim` (the shared encoder MLP's output per image; absent or 0: a one-image encoder) and
`tilt_layers` (hidden layers of the second MLP, width qdim). Defaults are cryoDRGN 4.3.1's
`train_vae` choices; `PRESETS['paper']` is the ICLR 2020 paper's architecture.
"""
from __future__ import annotations

from cryoscape.core.lattice import circular_mask

from .decoder import DECODERS, FourierDecoder, HartleyDecoder, VolumeDecoder, upper_half
from .encoding import PE_TYPES, PositionalEncoding
from .mlp import MLP, ResidLinear
from .vae import VAE, TiltEncoder

DEFAULTS: dict = {
    "qlayers": 3, "qdim": 1024, "players": 3, "pdim": 1024, "zdim": 8,
    "pe_type": "gaussian", "pe_dim": None, "feat_sigma": 0.5, "domain": "fourier",
    "activation": "relu", "encode_mode": "resid", "enc_mask": None,  # None: lattice_D // 2
}

PRESETS: dict[str, dict] = {
    "cryodrgn": {},
    # Zhong et al. 2020: 10 hidden layers of 128 (encoder and decoder), ReLU, a geometric
    # positional encoding without the highest frequencies (cryoDRGN's geom_lowf, the default of
    # that era for noisy data), Hartley-domain decoder.
    "paper": {"qlayers": 10, "qdim": 128, "players": 10, "pdim": 128, "pe_type": "geom_lowf",
              "domain": "hartley", "encode_mode": "resid", "activation": "relu"},
    # cryoDRGN's ab initio commands (abinit_homo/abinit_het): 3 hidden layers of 256; a pose
    # search evaluates the decoder far more often than training does
    "abinit": {"qdim": 256, "pdim": 256},
}

ENCODE_MODES = ("resid", "mlp")


def resolve_model_args(model_args: dict | None, lattice_D: int, preset: str | None = None) -> dict:
    """Full model_args: DEFAULTS, then the preset, then `model_args`; enc_mask filled in."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {list(PRESETS)}")
    args = {**DEFAULTS, **PRESETS.get(preset or "cryodrgn", {}), **(model_args or {})}
    if args["enc_mask"] is None:
        args["enc_mask"] = lattice_D // 2
    if args["domain"] not in DECODERS:
        raise ValueError(f"unknown domain {args['domain']!r}; choose from {list(DECODERS)}")
    if args["encode_mode"] not in ENCODE_MODES:
        raise ValueError(f"unsupported encode_mode {args['encode_mode']!r}; "
                         f"choose from {ENCODE_MODES}")
    return args


def build_decoder(model_args: dict, lattice_D: int) -> VolumeDecoder:
    """The volume decoder alone (zdim from model_args; 0 for homogeneous)."""
    a = model_args
    return DECODERS[a["domain"]](lattice_D, a.get("zdim", 0) or 0, a["players"], a["pdim"],
                                 a["pe_type"], a.get("pe_dim"), a.get("feat_sigma"),
                                 a.get("activation", "relu"))


def build_model(model_args: dict | None, lattice_D: int, enc_in_dim: int | None = None,
                preset: str | None = None) -> VAE:
    """VAE for an odd lattice of size lattice_D (box + 1); zdim 0 gives a decoder-only model.

    enc_in_dim: the encoder's input size; None: the pixels inside enc_mask (cryoDRGN's rule).
    """
    args = resolve_model_args(model_args, lattice_D, preset)
    zdim = int(args["zdim"] or 0)
    if 2 * args["enc_mask"] + 1 > lattice_D:
        raise ValueError(f"enc_mask {args['enc_mask']} too large for lattice size {lattice_D}")
    n_mask = int(circular_mask(lattice_D - 1, args["enc_mask"]).sum())
    if enc_in_dim is not None and enc_in_dim != n_mask:
        raise ValueError(f"enc_in_dim {enc_in_dim} != {n_mask} pixels inside enc_mask "
                         f"{args['enc_mask']} on a {lattice_D}-lattice")
    encoder = None
    resid = args["encode_mode"] == "resid"
    emb = int(args.get("tilt_emb_dim") or 0)
    if zdim > 0 and emb:
        encoder = TiltEncoder(
            MLP(n_mask, args["qlayers"], args["qdim"], emb, args["activation"], resid=resid),
            MLP(2 * emb, int(args.get("tilt_layers", 2)), args["qdim"], 2 * zdim,
                args["activation"], resid=resid))
    elif zdim > 0:
        encoder = MLP(n_mask, args["qlayers"], args["qdim"], 2 * zdim, args["activation"],
                      resid=resid)
    return VAE(encoder, build_decoder(args, lattice_D), zdim)


def __getattr__(name):
    """`decode_volumes` lives in cryoscape.core.decode; importable from here as agreed."""
    if name == "decode_volumes":
        from cryoscape.core.decode import decode_volumes
        return decode_volumes
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULTS",
    "MLP",
    "PE_TYPES",
    "PRESETS",
    "VAE",
    "FourierDecoder",
    "HartleyDecoder",
    "PositionalEncoding",
    "ResidLinear",
    "TiltEncoder",
    "VolumeDecoder",
    "build_decoder",
    "build_model",
    "resolve_model_args",
    "upper_half",
]
