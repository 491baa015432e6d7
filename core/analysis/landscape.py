"""The conformational landscape in volume space (as cryoDRGN's analyze_landscape and
analyze_landscape_full): a sketch of maps, their principal components, and states.

The latent space is only an intermediate (distant points can decode to the same map), so the
maps themselves are compared: k-means centres of z (the sketch, 1000 by default) are decoded at
a chosen box, masked (the union of the thresholded maps, dilated with a soft edge, or a user's
mask), and the masked voxels are reduced by PCA. Agglomerative clustering of the maps' volume
PCs gives M states. Each particle takes the state of its nearest centre and volume-PC
coordinates from a small MLP trained on the centres (z -> volume PCs), whose R^2 on held-out
centres is reported. States' maps are the means of their maps; maps along the volume PCs are
the mean masked map plus multiples of a component.

    res = compute_landscape(run, sketch=1000, states=5)   # cached in RUN/analysis_cache
    res.state, res.volume_pcs, res.occupancy, res.state_maps
    write_landscape(res, run, "OUT")                      # maps, .cxc, plots, landscape.npz
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.io.atomic import atomic_open

LINKAGES = ("ward", "average", "complete", "single")
PC_MAPS = 2           # volume PCs with maps along them
PC_STEPS = 10         # maps along each, 5th to 95th percentile of the particles' coordinates
MIN_PER_CENTRE = 10   # a small run gets at most N / 10 centres
UNITS = {"decoding the sketch": "map"}   # progress stages' units (others: steps)
# the settings that the sketch's maps depend on (a cached sketch serves the others)
SKETCH_SETTINGS = ("sketch", "box", "seed", "precision", "weights")
F16_MAX = 6e4         # the sketch's maps are kept in float16 below this (its largest: 65504)


@dataclass
class Landscape:
    """A run's landscape. Per particle: `state` [N] (0..M-1), `volume_pcs` [N, k],
    `centre_labels` [N] (its sketch centre). Sketch: `centres` [K, zdim], `centre_pcs` [K, k]
    (volume PCs of their maps), `centre_state` [K]. `explained_variance_ratio` [k];
    `state_maps` [M, b, b, b] (mean map of each state), `pc_maps` [P, n, b, b, b] at
    `pc_values` [P, n]; `mask` [b, b, b]; `info`: settings, timings, decoder FLOPs, the
    regressor's held-out R^2."""

    state: np.ndarray
    volume_pcs: np.ndarray
    centre_labels: np.ndarray
    centres: np.ndarray
    centre_pcs: np.ndarray
    centre_state: np.ndarray
    explained_variance_ratio: np.ndarray
    state_maps: np.ndarray
    pc_maps: np.ndarray
    pc_values: np.ndarray
    mask: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def occupancy(self) -> np.ndarray:
        """Particles per state [M]."""
        return np.bincount(self.state, minlength=len(self.state_maps))

    def save(self, path: str | os.PathLike) -> Path:
        """Everything in one .npz (no pickles), atomically."""
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "info"}
        with atomic_open(path, "wb") as f:
            np.savez(f, info=np.array(json.dumps(self.info)), **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Landscape:
        try:
            with np.load(path, allow_pickle=False) as d:
                kw = {f.name: d[f.name] for f in fields(cls) if f.name != "info"}
                return cls(**kw, info=json.loads(str(d["info"])))
        except (OSError, KeyError, ValueError) as e:
            raise InputFileError(path, f"not a landscape file ({e})") from None


def sketch_size(n: int, sketch: int = 1000) -> int:
    """Centres for n particles: `sketch`, at most n / MIN_PER_CENTRE (and at least 2)."""
    return int(max(2, min(sketch, n // MIN_PER_CENTRE)))


def cache_key(z, epoch, kind: str = "landscape", **settings) -> str:
    """File name of a cached landscape (or, `kind` "sketch", of its decoded sketch): epoch,
    settings and a digest of z."""
    h = hashlib.sha1(np.ascontiguousarray(z, dtype=np.float32).tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return f"{kind}.{_epoch_name(epoch)}.{h.hexdigest()[:16]}.npz"


def latents_digest(z) -> str:
    """What identifies the latents a landscape was computed from (its info's 'latents')."""
    return hashlib.sha1(np.ascontiguousarray(z, dtype=np.float32).tobytes()).hexdigest()[:16]


def find_cached(cache_dir, z, epoch, weights: str, states: int | None = None) -> Path | None:
    """A landscape cached in `cache_dir` for the latents z at `epoch` with the weights file
    named `weights`, whatever its other settings: the one with `states` states if there is
    one, else the newest."""
    digest, found = latents_digest(z), []
    for p in Path(cache_dir).glob(f"landscape.{_epoch_name(epoch)}.*.npz"):
        try:
            with np.load(p, allow_pickle=False) as d:
                info = json.loads(str(d["info"]))
        except (OSError, KeyError, ValueError):
            continue
        if info.get("latents") == digest and info.get("weights") == weights:
            found.append((info.get("states") == states, p.stat().st_mtime, p))
    return max(found)[2] if found else None


def _epoch_name(epoch) -> str:
    return "final" if epoch is None else f"e{int(epoch)}"


def _reporter(progress):
    """progress: False, True (tqdm bars) or a callable(stage, done, total) (e.g. a GUI)."""
    if callable(progress):
        return progress
    bars = {}

    def report(stage: str, done: int, total: int) -> None:
        if not progress:
            return
        if stage not in bars:
            from tqdm import tqdm
            bars[stage] = tqdm(total=total, desc=stage, unit=UNITS.get(stage, "step"))
        bar = bars[stage]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
    return report


def decode_sketch(run, z, box: int, epoch=None, report=None,
                  bf16: bool = False) -> tuple[np.ndarray, dict]:
    """Maps [M, box, box, box] at z [M, zdim] (Run.decode, `decode.maps_per_call` maps a call,
    in bfloat16 autocast with `bf16`) and {seconds, flops} of the decoder's matrix products
    (2 in out per row of every Linear)."""
    import torch
    from cryoscape.core.decode import maps_per_call

    decoder = run.model(epoch).decoder
    flops = [0]

    def count(module, inputs, output):
        flops[0] += 2 * output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in decoder.modules()
             if isinstance(m, torch.nn.Linear)]
    maps = np.empty((len(z), box, box, box), dtype=np.float32)
    step = maps_per_call(box)
    t0 = time.perf_counter()
    try:
        for s in range(0, len(z), step):
            maps[s:s + step] = run.decode(z[s:s + step], D=box, epoch=epoch, bf16=bf16)
            if report:
                report("decoding the sketch", min(s + step, len(z)), len(z))
    finally:
        for h in hooks:
            h.remove()
    seconds = time.perf_counter() - t0
    return maps, {"seconds": seconds, "flops": float(flops[0]),
                  "flop_per_s": flops[0] / max(seconds, 1e-9)}


def sketch_maps(run, centres, box: int, epoch, report, bf16: bool, path: Path | None
                ) -> tuple[np.ndarray, dict]:
    """`decode_sketch`'s maps, kept in float16 (rounding 1/2000, under bf16 decoding's 0.3%;
    float32 where values pass float16's range) and cached at `path` (K box^3 2-byte values:
    0.5 GB for 1000 maps of 64^3) with the decoding's statistics, so that another number of
    states, linkage, mask or PCs decodes nothing again."""
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as d:
                if d["maps"].shape == (len(centres), box, box, box):
                    return d["maps"].astype(np.float32), {**json.loads(str(d["info"])),
                                                          "cached": True}
        except (OSError, KeyError, ValueError):
            pass      # unreadable (e.g. cut short): decoded again
    maps, dec = decode_sketch(run, centres, box, epoch, report, bf16)
    if np.abs(maps).max() < F16_MAX:
        maps = maps.astype(np.float16)
    if path is not None:
        try:
            with atomic_open(path, "wb") as f:
                np.savez(f, maps=maps, info=np.array(json.dumps(dec)))
        except OSError:
            pass      # a cache that cannot be written only costs time
    return maps.astype(np.float32), dec


def landscape_mask(maps, voxel_size: float, mask=None, dilate: float | None = None,
                   soft_edge: float | None = None) -> np.ndarray:
    """A soft mask [b, b, b]: the user's `mask` (array or MRC path, checked against the box),
    else the union of the maps thresholded at their `masks.auto_threshold`, dilated by
    `dilate` A (default 2 voxels) with a `soft_edge` A raised-cosine edge (default 3 voxels)."""
    from cryoscape.core.masks import auto_threshold, soft_mask

    box = maps.shape[-1]
    if mask is not None:
        source = mask
        if isinstance(mask, (str, os.PathLike)):
            from cryoscape.core.io.mrc import read_mrc
            mask = read_mrc(mask)[0]
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != (box,) * 3:
            raise InputFileError(source if isinstance(source, (str, os.PathLike)) else "mask",
                                 f"mask is {'x'.join(map(str, mask.shape))} but the maps are "
                                 f"{box}^3: decode at its box (-D) or resample it")
        if not (mask > 0).any():
            raise CryoscapeError("the mask is empty: no voxel is above 0")
        return np.clip(mask, 0, 1)
    inside = np.zeros((box,) * 3, dtype=bool)
    for vol in maps:
        inside |= vol >= auto_threshold(vol)
    dilate = 2 * voxel_size if dilate is None else dilate
    soft_edge = 3 * voxel_size if soft_edge is None else soft_edge
    return soft_mask(inside, voxel_size, dilate, soft_edge)


def fit_regressor(z_centres, pcs, seed: int = 0, holdout: float = 0.2, steps: int = 500):
    """An MLP z -> volume PCs (two hidden layers of 64, SiLU; full-batch Adam with a cosine
    learning rate, `steps` steps, seeded, on one thread: many threads only wait on each other
    for products this small) trained on the centres, inputs and outputs standardised.
    Returns (predict(z) -> [M, k], variance-weighted R^2 on a held-out `holdout` of the
    centres, fitted without them; `predict` is then refitted on every centre)."""
    import torch

    z_centres = np.asarray(z_centres, np.float32)
    pcs = np.asarray(pcs, np.float32)
    zm, zs = z_centres.mean(0), z_centres.std(0) + 1e-6
    pm, ps = pcs.mean(0), pcs.std(0) + 1e-6

    def fit(idx):
        x = torch.as_tensor((z_centres[idx] - zm) / zs)
        y = torch.as_tensor((pcs[idx] - pm) / ps)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.SiLU(),
                                      torch.nn.Linear(64, 64), torch.nn.SiLU(),
                                      torch.nn.Linear(64, y.shape[1]))
        opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-5)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
            sched.step()
        net.eval()

        def predict(z):
            with torch.no_grad():
                z = torch.as_tensor((np.asarray(z, np.float32).reshape(len(z), -1) - zm) / zs)
                return net(z).numpy() * ps + pm
        return predict

    order = np.random.default_rng(seed).permutation(len(pcs))
    n_out = max(1, round(holdout * len(pcs)))
    r2 = float("nan")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if len(pcs) > n_out + 2:
            test = order[:n_out]
            err = fit(order[n_out:])(z_centres[test]) - pcs[test]
            r2 = float(1 - (err ** 2).sum() / ((pcs[test] - pcs[test].mean(0)) ** 2).sum())
        return fit(order), r2
    finally:
        torch.set_num_threads(threads)


def masked_pca(X, k: int):
    """PCA of maps' masked voxels X [M, V] (M << V) through the M x M Gram matrix, in place of
    X: a `PCAResult` (coords [M, k], components [k, V] unit rows, each signed so that its
    largest entry is positive)."""
    import torch
    from cryoscape.core.analysis.embed import PCAResult

    X = torch.as_tensor(X, dtype=torch.float32)
    mean = X.mean(0)
    X -= mean
    gram = (X @ X.T).double()
    evals, evecs = torch.linalg.eigh(gram)
    evals, evecs = evals.flip(0)[:k].clamp_min(0), evecs.flip(1)[:, :k]
    comps = (evecs.T.float() @ X) / evals.sqrt().clamp_min(1e-12).float()[:, None]
    sign = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    comps, evecs = comps * sign, evecs * sign.T.double()
    var = evals / max(len(X) - 1, 1)
    total = float(gram.trace()) / max(len(X) - 1, 1)
    return PCAResult(coords=(evecs * evals.sqrt()).numpy(), components=comps.numpy(),
                     explained_variance=var.numpy(),
                     explained_variance_ratio=(var / max(total, 1e-30)).numpy(),
                     mean=mean.numpy())


def landscape_settings(run, n: int, epoch: int | None = None, *, sketch: int = 1000,
                       states: int = 5, linkage: str = "ward", mask=None, box: int | None = None,
                       pcs: int = 10, dilate: float | None = None,
                       soft_edge: float | None = None, seed: int = 0, amp: bool = True) -> dict:
    """The checked settings of the landscape of `run`'s n latents at `epoch` (see
    `compute_landscape`), as `cache_key` hashes them: a cached landscape is at
    `cache_dir / cache_key(z, epoch, **landscape_settings(...))`. Its `precision`: bfloat16
    with `amp` where run.device has it natively (as training), else float32."""
    from cryoscape.core.device import native_bf16

    if linkage not in LINKAGES:
        raise CryoscapeError(f"linkage must be one of {', '.join(LINKAGES)}, got {linkage!r}")
    K = sketch_size(n, sketch)
    box = int(box or min(run.D, 64))
    if box % 2 or not 2 <= box <= run.D:
        raise CryoscapeError(f"the box (-D) must be even and at most the run's {run.D}, got {box}")
    if not 2 <= states <= K:
        raise CryoscapeError(f"states must be between 2 and the sketch's {K} maps, got {states}")
    if pcs < 1:
        raise CryoscapeError(f"the number of volume PCs must be at least 1, got {pcs}")
    return {"sketch": K, "states": states, "linkage": linkage, "box": box, "pcs": pcs,
            "dilate": dilate, "soft_edge": soft_edge, "seed": seed,
            "precision": "bfloat16" if amp and native_bf16(run.device) else "float32",
            "weights": run.weights_path(epoch).name, "mask": _mask_id(mask)}


def compute_landscape(run, epoch: int | None = None, *, sketch: int = 1000, states: int = 5,
                      linkage: str = "ward", mask=None, box: int | None = None, pcs: int = 10,
                      dilate: float | None = None, soft_edge: float | None = None,
                      seed: int = 0, amp: bool = True,
                      cache_dir: str | os.PathLike | None = None,
                      progress=True) -> Landscape:
    """The landscape of `run` at `epoch` (None: its latest latents). `mask`: an MRC path or an
    array (None: made from the maps); `box`: decode at this box (default: the run's, at most
    64); `amp`: the sketch decoded in bfloat16 where the device has it natively (3-4x faster,
    maps within 0.3%; `landscape_settings`). Read from / written to `cache_dir` (e.g.
    `cache.analysis_cache_dir(run)`) when given, keyed by the latents and every setting.
    `progress`: see `_reporter`."""
    from cryoscape.core.analysis.sampling import kmeans

    z = np.asarray(run.latents(epoch), dtype=np.float32)
    if z.ndim == 1:
        z = z[:, None]
    n = len(z)
    settings = landscape_settings(run, n, epoch, sketch=sketch, states=states, linkage=linkage,
                                  mask=mask, box=box, pcs=pcs, dilate=dilate,
                                  soft_edge=soft_edge, seed=seed, amp=amp)
    K, box = settings["sketch"], settings["box"]
    cached = Path(cache_dir) / cache_key(z, epoch, **settings) if cache_dir else None
    if cached is not None and cached.exists():
        try:
            return Landscape.load(cached)
        except InputFileError:
            pass   # unreadable (e.g. cut short): computed again
    report = _reporter(progress)
    t0 = time.perf_counter()
    km = kmeans(z, K, seed=seed, n_init=1)
    t_kmeans = time.perf_counter() - t0
    sketch_file = None if cache_dir is None else Path(cache_dir) / cache_key(
        z, epoch, "sketch", **{k: settings[k] for k in SKETCH_SETTINGS})
    maps, dec = sketch_maps(run, km.centers.astype(np.float32), box, epoch, report,
                            settings["precision"] == "bfloat16", sketch_file)
    t1 = time.perf_counter()
    voxel = run.voxel_size(box)
    soft = landscape_mask(maps, voxel, mask, dilate, soft_edge)
    support = soft > 0
    k = min(pcs, K - 1, int(support.sum()))
    vp = masked_pca(maps[:, support] * soft[support], k)
    centre_pcs = vp.coords.astype(np.float32)
    report("volume PCA and states", 1, 3)
    centre_state = _cluster(centre_pcs, states, linkage)
    state = centre_state[km.labels]
    predict, r2 = fit_regressor(km.centers, centre_pcs, seed)
    volume_pcs = np.concatenate([predict(z[s:s + 65536]) for s in range(0, n, 65536)]
                                ).astype(np.float32)
    report("volume PCA and states", 2, 3)
    state_maps = np.stack([maps[centre_state == s].mean(0) for s in range(states)])
    P = min(PC_MAPS, k)
    pc_values = np.stack([np.percentile(volume_pcs[:, j], np.linspace(5, 95, PC_STEPS))
                          for j in range(P)]).astype(np.float32)
    pc_maps = np.zeros((P, PC_STEPS) + maps.shape[1:], dtype=np.float32)
    for j in range(P):
        inside = vp.mean + pc_values[j][:, None] * vp.components[j]
        pc_maps[j][:, support] = inside
    report("volume PCA and states", 3, 3)
    res = Landscape(state=state.astype(np.int64), volume_pcs=volume_pcs,
                    centre_labels=km.labels.astype(np.int64),
                    centres=km.centers.astype(np.float32), centre_pcs=centre_pcs,
                    centre_state=centre_state, explained_variance_ratio=np.asarray(
                        vp.explained_variance_ratio, dtype=np.float32),
                    state_maps=state_maps.astype(np.float32), pc_maps=pc_maps,
                    pc_values=pc_values, mask=soft.astype(np.float32))
    res.info = {**settings, "epoch": epoch, "latents": latents_digest(z), "n_particles": n,
                "zdim": int(z.shape[1]),
                "voxel_size": voxel, "regressor_r2_heldout": r2,
                "decoder_flops": dec["flops"], "decoder_flop_per_s": dec["flop_per_s"],
                "mask_voxels": int(support.sum()),
                "sketch_cached": bool(dec.get("cached")),
                "seconds": {"kmeans": round(t_kmeans, 2), "decode": round(dec["seconds"], 2),
                            "pca_states_regressor": round(time.perf_counter() - t1, 2)}}
    if cached is not None:
        try:
            res.save(cached)
        except OSError:
            pass   # a cache that cannot be written only costs time
    return res


def _mask_id(mask) -> str | None:
    """What identifies a mask in the cache key: its path and modification time, or a digest."""
    if mask is None:
        return None
    if isinstance(mask, (str, os.PathLike)):
        p = Path(mask)
        if not p.exists():
            raise InputFileError(p, "mask file not found")
        return f"{p.resolve()}@{p.stat().st_mtime_ns}"
    return hashlib.sha1(np.ascontiguousarray(mask, dtype=np.float32).tobytes()).hexdigest()


def _cluster(centre_pcs, states: int, linkage: str) -> np.ndarray:
    """Agglomerative clustering of the maps' volume PCs into `states`, numbered by their mean
    volume-PC1 coordinate (ascending), so that labels are deterministic."""
    from sklearn.cluster import AgglomerativeClustering

    labels = AgglomerativeClustering(n_clusters=states, linkage=linkage).fit_predict(centre_pcs)
    means = [centre_pcs[labels == s, 0].mean() for s in range(states)]
    rank = np.empty(states, dtype=np.int64)
    rank[np.argsort(means, kind="stable")] = np.arange(states)
    return rank[labels]


def write_landscape(res: Landscape, run, outdir: str | os.PathLike) -> dict:
    """Write OUT/landscape.npz (per particle `state` [N], `volume_pcs` [N, k]; the sketch's
    `centres`, `centre_labels`, `centre_state`, `centre_pcs`), the states' maps and the maps
    along the volume PCs (MRC + ChimeraX .cxc each), mask.mrc, the plots and summary.json."""
    from cryoscape.core.analysis import plots
    from cryoscape.core.analysis.embed import pca as latent_pca
    from cryoscape.core.export import make_outdir, write_volume_series
    from cryoscape.core.io.mrc import write_mrc

    out = make_outdir(outdir)
    voxel = float(res.info.get("voxel_size") or run.voxel_size(res.mask.shape[-1]))
    with atomic_open(out / "landscape.npz", "wb") as f:
        np.savez(f, state=res.state, volume_pcs=res.volume_pcs, centres=res.centres,
                 centre_labels=res.centre_labels, centre_state=res.centre_state,
                 centre_pcs=res.centre_pcs,
                 explained_variance_ratio=res.explained_variance_ratio)
    write_mrc(out / "mask.mrc", res.mask, apix=voxel)
    series = {"states": write_volume_series(res.state_maps, out / "states", voxel,
                                            prefix="state_")}
    for j, maps in enumerate(res.pc_maps):
        series[f"pc{j + 1}"] = write_volume_series(maps, out / f"pc{j + 1}", voxel)
    evr = res.explained_variance_ratio
    figures = ["volume_pcs.png", "occupancy.png", "latent_states.png"]
    if res.volume_pcs.shape[1] >= 2:
        xy = res.volume_pcs[:, :2]
        axes = (f"volume PC1 ({100 * evr[0]:.0f}%)", f"volume PC2 ({100 * evr[1]:.0f}%)")
    else:
        xy = np.stack([res.volume_pcs[:, 0], np.zeros(len(res.state))], 1)
        axes = (f"volume PC1 ({100 * evr[0]:.0f}%)", "")
    plots.plot_scatter(out / figures[0], xy, "particles in volume space, by state", axes,
                       color=res.state)
    plots.plot_bars(out / figures[1], res.occupancy, "state occupancy", "state", "particles")
    z = run.latents(res.info.get("epoch"))
    z = z[:, None] if z.ndim == 1 else z
    if z.shape[1] >= 2:
        lp = latent_pca(z, 2)
        zxy, zaxes = lp.coords, tuple(f"latent PC{i + 1} ({100 * v:.0f}%)"
                                      for i, v in enumerate(lp.explained_variance_ratio))
    else:
        zxy, zaxes = np.stack([z[:, 0], res.volume_pcs[:, 0]], 1), ("z", "volume PC1")
    plots.plot_scatter(out / figures[2], zxy, "latent space, by state", zaxes, color=res.state)
    summary = {"run": str(run.path), **res.info, "occupancy": res.occupancy.tolist(),
               "explained_variance_ratio": evr.tolist(), "figures": figures,
               "maps": {k: {"files": [str(p.relative_to(out)) for p in s.paths],
                            "cxc": str(s.cxc.relative_to(out)), "level": s.level}
                        for k, s in series.items()}}
    with atomic_open(out / "summary.json", "w") as f:
        json.dump(summary, f, indent=1)
    return summary
