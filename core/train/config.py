"""Training settings: one dataclass, cryoDRGN 4.3.1's `train_vae` defaults, and presets.

`TrainConfig.model_args()`, `.dataset_args()` and `.lattice_args()` give the sections of
config.yaml under cryoDRGN's key names, so a cryoscape run directory reads like a cryoDRGN one.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from cryoscape.core.errors import CryoscapeError
from cryoscape.core.models import DEFAULTS as MODEL_DEFAULTS
from cryoscape.core.models import PRESETS as MODEL_PRESETS

# TrainConfig fields named unlike cryoDRGN's model_args keys (the others share the name).
MODEL_ARG_FIELDS = {"qlayers": "enc_layers", "qdim": "enc_dim", "players": "dec_layers",
                    "pdim": "dec_dim"}
# The architecture presets of core.models (cryoDRGN 4.3.1's defaults, the paper's), as fields.
PRESETS = {name: {MODEL_ARG_FIELDS.get(k, k): v for k, v in preset.items()}
           for name, preset in MODEL_PRESETS.items()}
# ab initio needs a decoder that follows the poses it finds: at cryoDRGN's 1e-4, 3000 images
# (D=64, SNR 0.1) were still unaligned (112 deg) after two search epochs, at 1e-3 within 12 deg
PRESETS["abinit"]["lr"] = 1e-3
EPOCHS = 20     # epochs when -n is not given (cryoDRGN's; with a pose search, at least)
# weights saved as their average over ~2 epochs of steps: with known poses it raised the
# per-image FSC area on all four of the paper's datasets (BENCHMARKS.md, paper_quick_tried);
# with a pose search, unmeasured, they are the last step's
WEIGHT_AVERAGE = 2.0


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults are cryoDRGN 4.3.1's `train_vae` ones, but
    for the weight average (WEIGHT_AVERAGE)."""

    particles: str
    poses: str | None = None
    ctf: str | None = None
    ind: str | None = None
    datadir: str | None = None
    lazy: bool = False
    workers: int | None = None         # DataLoader workers reading ahead; None: data.default_workers
    downsample: int | None = None      # Fourier-crop the images to this box as they are read
    zdim: int = MODEL_DEFAULTS["zdim"]
    num_epochs: int | None = None      # None: 20; with pose search as its schedule needs
    batch_size: int = 8
    lr: float = 1e-4
    lr_schedule: str = "constant"      # constant, or cosine: decayed to 0 by the last epoch
    lr_warmup: float = 0.0             # epochs of linear warm-up from 0 to lr
    weight_average: float | None = None  # epochs: weights saved as their moving average over
                                       # about this many epochs (0: the last step's; pose
                                       # search: of the epochs after the search); None:
                                       # WEIGHT_AVERAGE with known poses, 0 with pose search
    wd: float = 0.0
    beta: float | None = None          # KL weight; None = 1/zdim as cryoDRGN
    beta_warmup: float = 0.0           # epochs of linear warm-up of the KL weight from 0
    enc_layers: int = MODEL_DEFAULTS["qlayers"]
    enc_dim: int = MODEL_DEFAULTS["qdim"]
    dec_layers: int = MODEL_DEFAULTS["players"]
    dec_dim: int = MODEL_DEFAULTS["pdim"]
    encode_mode: str = MODEL_DEFAULTS["encode_mode"]
    enc_mask: int | None = None        # encoder input radius in pixels; None = D//2
    pe_type: str = MODEL_DEFAULTS["pe_type"]
    pe_dim: int | None = None
    feat_sigma: float = MODEL_DEFAULTS["feat_sigma"]
    domain: str = MODEL_DEFAULTS["domain"]
    activation: str = MODEL_DEFAULTS["activation"]
    invert_data: bool | None = None    # None: decided from the data (preprocess.infer_invert)
    window: bool = True
    window_r: float = 0.85
    norm: tuple[float, float] | None = None
    seed: int = 0
    checkpoint_minutes: float = 10.0
    threads: int | None = None
    device: str | None = None          # None: cuda if available, else cpu
    amp: bool = True                   # bf16 autocast where native (loop.native_bf16)
    compile: bool = False              # torch.compile, GPU only
    max_loss_ratio: float = 1e3        # a batch loss this many times the running mean diverges
    preset: str | None = None
    # ab initio (core/train/abinit): no poses given, they are searched and then refined
    pose_search: bool = False
    pretrain_epochs: int | None = None  # random poses (the paper's first epoch)
    search_epochs: int | None = None   # epochs whose poses are searched, after the pretraining
                                       # (None of the three: abinit.auto_schedule, once the
                                       # number of images is known)
    search_chunk: int = 256            # images searched with one frozen decoder
    search_method: str = "beam"        # beam (best K) or bnb (the paper's bound)
    search_classes: int = 2            # heterogeneous: reference volumes each image is
                                       # searched against (core/train/abinit)
    beam: int = 8                      # candidates kept per image and round
    t_extent: float | None = None      # shift search range, +- px; None: the search's default
    pose_sgd: bool = True              # refine poses by gradient descent after the search
    pose_lr: float = 1e-3              # Adam learning rate of the pose corrections
    # tilt pairs (the paper's D.2): the particles imaged again at a stage tilt about x
    tilt: str | None = None            # the tilted stack, one image per particle, same order
    tilt_deg: float = 45.0
    tilt_emb_dim: int = 128            # two-image encoder: the shared MLP's output (paper)
    tilt_layers: int = 2               # hidden layers of the MLP on the two outputs (paper)
    command_line: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.zdim < 0:
            raise CryoscapeError(f"--zdim must be >= 0, not {self.zdim}")
        if self.num_epochs is None and not self.pose_search:
            self.num_epochs = EPOCHS
        if self.weight_average is None:
            self.weight_average = 0.0 if self.pose_search else WEIGHT_AVERAGE
        if (self.num_epochs is not None and self.num_epochs < 1) or self.batch_size < 1:
            raise CryoscapeError("--num-epochs and --batch-size must be >= 1")
        if self.lr_schedule not in ("constant", "cosine") or \
                min(self.lr_warmup, self.weight_average, self.beta_warmup) < 0:
            raise CryoscapeError(f"--lr-schedule must be constant or cosine (not "
                                 f"{self.lr_schedule!r}), --lr-warmup, --weight-average and "
                                 "--beta-warmup >= 0")
        if self.domain not in ("fourier", "hartley"):
            raise CryoscapeError(f"--domain must be fourier or hartley, not {self.domain!r}")
        if self.pose_search and ((self.pretrain_epochs is not None and self.pretrain_epochs < 0)
                                 or (self.search_epochs is not None and self.search_epochs < 1)
                                 or self.search_chunk < 1 or self.search_classes < 1):
            raise CryoscapeError("pose search needs --pretrain-epochs >= 0, --search-epochs >= 1, "
                                 "--search-chunk >= 1 and --search-classes >= 1")
        if self.search_method not in ("beam", "bnb"):
            raise CryoscapeError(f"--search-method must be beam or bnb, not "
                                 f"{self.search_method!r}")
        if self.tilt and (self.tilt_emb_dim < 1 or self.tilt_layers < 0):
            raise CryoscapeError("tilt pairs need tilt_emb_dim >= 1 and tilt_layers >= 0")
        if self.workers is not None and self.workers < 0:
            raise CryoscapeError(f"--workers must be >= 0, not {self.workers}")
        if self.downsample is not None and (self.downsample < 2 or self.downsample % 2):
            raise CryoscapeError(f"--downsample must be an even box size, not {self.downsample}")
        if self.norm is not None:
            self.norm = (float(self.norm[0]), float(self.norm[1]))

    @classmethod
    def with_preset(cls, preset: str | None, **kwargs) -> TrainConfig:
        """A config from a preset's values, overridden by `kwargs` (None values ignored)."""
        values = dict(PRESETS[preset]) if preset else {}
        values.update({k: v for k, v in kwargs.items() if v is not None})
        return cls(preset=preset, **values)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["norm"] = list(self.norm) if self.norm is not None else None
        return d

    def lr_at(self, epochs: float) -> float:
        """The learning rate after `epochs` (fractional) epochs of training: `lr_warmup`
        epochs rising linearly from 0, then `lr` (constant) or `lr` decayed along a half
        cosine to 0 at `num_epochs` (a resume with a larger -n stretches the decay from there)."""
        rise = min(1.0, epochs / self.lr_warmup) if self.lr_warmup else 1.0
        if self.lr_schedule == "constant":
            return self.lr * rise
        span = max(self.num_epochs - self.lr_warmup, 1e-9)
        done = min(max(epochs - self.lr_warmup, 0.0) / span, 1.0)
        return self.lr * rise * 0.5 * (1.0 + math.cos(math.pi * done))

    @property
    def kl_weight(self) -> float:
        return self.beta if self.beta is not None else (1.0 / self.zdim if self.zdim else 0.0)

    def kl_weight_at(self, epochs: float) -> float:
        """The KL weight after `epochs` (fractional) epochs: rising linearly from 0 over
        `beta_warmup` epochs, then `kl_weight`."""
        return self.kl_weight * (min(1.0, epochs / self.beta_warmup) if self.beta_warmup
                                 else 1.0)

    def abspaths(self) -> TrainConfig:
        """A copy with the input paths made absolute (as cryoDRGN records them)."""
        def ab(p):
            return os.path.abspath(p) if p else p
        return dataclasses.replace(self, particles=ab(self.particles), poses=ab(self.poses),
                                   ctf=ab(self.ctf), ind=ab(self.ind), datadir=ab(self.datadir),
                                   tilt=ab(self.tilt))

    def search_args(self) -> dict:
        """core.posesearch.SearchConfig's settings chosen here (None: its defaults)."""
        # volumes for the search decoded on the box's own lattice (oversample 1): 8x cheaper
        # than the 2x grid, slices ~3% off (core/posesearch), and the refinement epochs then
        # polish the poses against the decoder itself
        args = {"method": self.search_method, "beam": self.beam, "t_extent": self.t_extent,
                "oversample": 1}
        return {k: v for k, v in args.items() if v is not None}

    def model_args(self, D: int) -> dict:
        """cryoDRGN's model_args for an image box D (enc_mask defaults to D//2); with tilt
        pairs and zdim > 0 also the two-image encoder's tilt_emb_dim and tilt_layers."""
        tilt = ({"tilt_emb_dim": self.tilt_emb_dim, "tilt_layers": self.tilt_layers}
                if self.tilt and self.zdim else {})
        return {"qlayers": self.enc_layers, "qdim": self.enc_dim, "players": self.dec_layers,
                "pdim": self.dec_dim, "zdim": self.zdim, "encode_mode": self.encode_mode,
                "enc_mask": self.enc_mask if self.enc_mask is not None else D // 2,
                "pe_type": self.pe_type, "feat_sigma": self.feat_sigma, "pe_dim": self.pe_dim,
                "domain": self.domain, "activation": self.activation, **tilt}

    def lattice_args(self, D: int) -> dict:
        """cryoDRGN's symmetric lattice: D+1 points per axis, extent 0.5, DC ignored."""
        return {"D": D + 1, "extent": 0.5, "ignore_DC": True}

    def dataset_args(self, norm: tuple[float, float]) -> dict:
        return {"particles": self.particles, "norm": [float(norm[0]), float(norm[1])],
                "invert_data": self.invert_data, "ind": self.ind, "keepreal": False,
                "window": self.window, "window_r": self.window_r, "datadir": self.datadir,
                "ctf": self.ctf, "poses": self.poses, "do_pose_sgd": self.pose_search,
                "tilt": self.tilt, "tilt_deg": self.tilt_deg if self.tilt else None}
