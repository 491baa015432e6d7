"""Reading cryoDRGN configs and checkpoints into cryoscape models (and writing them back).

cryoscape's parameter names equal cryoDRGN 4.3.1's (`encoder.main.*`, `decoder.decoder.main.*`)
except for a few spellings; `VolumeDecoder.load_state_dict` accepts the first two as they are,
and this module maps all of them both ways:

- Gaussian features: cryoDRGN `decoder.rand_freqs` <-> cryoscape `decoder.pe.rand_freqs`;
- a Hartley decoder without positional encoding is cryoDRGN's bare ResidLinearMLP
  (`decoder.main.*`) <-> `decoder.decoder.main.*`;
- `train_nn` (homogeneous) checkpoints hold the decoder alone (no `decoder.` prefix), and their
  model_args say `layers`/`dim` for `players`/`pdim`.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml
from cryoscape.core.errors import CryoscapeError, InputFileError

from . import build_model
from .vae import VAE


def load_config(path: str | os.PathLike) -> dict:
    """A cryoDRGN/cryoscape config: config.yaml, or an old cryoDRGN config.pkl."""
    path = Path(path)
    if path.suffix == ".pkl":
        from cryoscape.core.io.pickles import load_pickle
        cfg = load_pickle(path)
    else:
        try:
            with open(path) as f:
                cfg = yaml.safe_load(f)
        except OSError as e:
            raise InputFileError(path, f"cannot read: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise InputFileError(path, f"not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(cfg, dict) or "model_args" not in cfg or "lattice_args" not in cfg:
        raise InputFileError(path, "not a cryoDRGN config (no model_args/lattice_args)")
    return cfg


def model_args(cfg: dict) -> dict:
    """cryoscape model_args from a config's model_args (train_nn's layers/dim renamed)."""
    a = dict(cfg["model_args"])
    if "players" not in a and "layers" in a:  # train_nn: decoder only
        a["players"], a["pdim"] = a.pop("layers"), a.pop("dim")
    a.setdefault("zdim", 0)
    for k in ("qlayers", "qdim"):
        a.setdefault(k, 1)
    return a


def unsupported_encoder(cfg: dict) -> str | None:
    """Why cryoscape does not read this cryoDRGN run's encoder (None: it does). cryoDRGN's
    encode_mode 'tilt' is, in 4.x, cryoDRGN-ET's tilt-series encoder (`train_vae --encode-mode
    tilt`: `ntilts` dose-weighted images of a particle from a tilt-series .star), and in the
    old tilt-pair commands (`abinit_het_old --tilt`) one whose sizes the config leaves out.
    Such a run opens with its decoder and latents (decode, explore) and no encoder."""
    a = cfg.get("model_args") or {}
    if a.get("encode_mode") != "tilt" or not a.get("zdim"):
        return None
    ntilts = (a.get("tilt_params") or {}).get("ntilts")
    what = (f"cryoDRGN-ET's tilt-series encoder ({ntilts} tilts a particle)" if ntilts else
            "cryoDRGN's tilt-pair encoder, whose sizes its config does not record")
    return (f"its encoder is {what}, which cryoscape does not read; its latents (z.pkl) and "
            "decoder are read (decode, explore)")


def _is_bare_mlp(a: dict) -> bool:
    return a.get("pe_type") == "none" and a.get("domain") == "hartley"


def from_cryodrgn_state_dict(sd: dict, args: dict) -> dict:
    """cryoDRGN state dict -> cryoscape's (args: resolved model_args)."""
    if not any(k.startswith("encoder.") for k in sd) and not any(
            k.startswith("decoder.decoder.") for k in sd) and "decoder.rand_freqs" not in sd:
        sd = {f"decoder.{k}": v for k, v in sd.items()}  # train_nn: the decoder alone
    out = {}
    for k, v in sd.items():
        if k == "decoder.rand_freqs":
            k = "decoder.pe.rand_freqs"
        elif _is_bare_mlp(args) and k.startswith("decoder.main."):
            k = "decoder." + k
        out[k] = v
    return out


def to_cryodrgn_state_dict(sd: dict, args: dict) -> dict:
    """cryoscape state dict -> cryoDRGN's HetOnlyVAE layout (decoder alone when zdim is 0)."""
    out = {}
    for k, v in sd.items():
        if k == "decoder.pe.rand_freqs":
            k = "decoder.rand_freqs"
        elif _is_bare_mlp(args) and k.startswith("decoder.decoder.main."):
            k = k[len("decoder."):]
        out[k] = v
    if not args.get("zdim"):
        out = {k[len("decoder."):]: v for k, v in out.items()}
    return out


def load_model(cfg: dict, weights: str | os.PathLike | dict) -> tuple[VAE, dict]:
    """(model in eval mode, checkpoint dict) from a config dict and a weights file or dict."""
    from cryoscape.core.io.pickles import load_checkpoint
    ckpt = load_checkpoint(weights) if not isinstance(weights, dict) else weights
    if "model_state_dict" not in ckpt:
        raise InputFileError(weights if not isinstance(weights, dict) else "<checkpoint>",
                             "no model_state_dict in this checkpoint")
    D = int(cfg["lattice_args"]["D"])
    args = model_args(cfg)
    no_encoder = unsupported_encoder(cfg) is not None
    if no_encoder:
        args["encode_mode"] = "resid"
    try:
        model = build_model(args, D)
    except ValueError as e:  # a cryoDRGN setting this reader does not support
        raise CryoscapeError(f"the run's model settings are not supported: {e}") from None
    sd = from_cryodrgn_state_dict(ckpt["model_state_dict"], args)
    if no_encoder:
        model.encoder = None
        sd = {k: v for k, v in sd.items() if not k.startswith("encoder.")}
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        name = weights if not isinstance(weights, dict) else "<checkpoint>"
        raise InputFileError(name, "weights do not fit the config's model: "
                             + str(e).splitlines()[-1].strip()[:300]) from None
    return model.eval(), ckpt
