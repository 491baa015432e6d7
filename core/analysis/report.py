"""`cryoscape analyze`: a report folder about one epoch of a run (plots, maps, index.html)."""
from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path

import numpy as np
from cryoscape.core.analysis import embed, plots, sampling, trajectory
from cryoscape.core.analysis.cache import analysis_cache_dir
from cryoscape.core.analysis.maps import write_maps
from cryoscape.core.analysis.posechanges import plot_pose_changes, run_pose_changes
from cryoscape.core.export import make_outdir
from cryoscape.core.io.atomic import atomic_open


def resolve_epoch(run, epoch: int | None) -> int | None:
    """The epoch to analyse: as given (checked against the run's epochs) or the latest;
    refuses runs without latents (zdim 0)."""
    from cryoscape.core.errors import CryoscapeError

    if getattr(run, "zdim", None) == 0:
        raise CryoscapeError(f"{run.path}: a homogeneous run (zdim 0) has no latent space")
    epochs = list(run.epochs)
    if epoch is None:
        return epochs[-1] if epochs else None
    if epochs and epoch not in epochs:
        raise CryoscapeError(f"{run.path}: no epoch {epoch} (epochs with latents: "
                             f"{', '.join(map(str, epochs))})")
    return epoch


def loss_curve(metrics: list[dict]) -> tuple[np.ndarray, dict] | None:
    """(x, {name: values}) from run.metrics(): loss, and mse/kl where present, per epoch
    (the last record of each epoch)."""
    rows = [m for m in metrics if "loss" in m and "epoch" in m]
    if not rows:
        return None
    last = {}
    for m in rows:
        last[m["epoch"]] = m
    ep = np.array(sorted(last))
    curves = {k: np.array([last[e].get(k, np.nan) for e in ep], float)
              for k in ("loss", "mse", "kl") if any(k in last[e] for e in ep)}
    return ep, curves


def _scatter_pair(out: Path, name: str, xy, axes, title: str, km) -> list[str]:
    files = [f"{name}.png", f"{name}_hexbin.png", f"{name}_kmeans.png"]
    plots.plot_scatter(out / files[0], xy, title, axes)
    plots.plot_hexbin(out / files[1], xy, f"{title}: density", axes)
    plots.plot_scatter(out / files[2], xy, f"{title}: k-means ({km.k})", axes, color=km.labels,
                       marks=xy[km.medoids])
    return files


def analyze(run, outdir: str | os.PathLike, epoch: int | None = None, k: int = 20,
            skip_umap: bool = False, D: int | None = None, n_traverse: int = 10,
            seed: int = 0, progress: bool = True, cache_dir: str | os.PathLike | None = None,
            umap_background: bool = True) -> dict:
    """Write the report folder and return its summary (also saved as summary.json).

    UMAP embeddings are cached in `cache_dir` (default: see `analysis_cache_dir`) and computed
    in a child process while the maps are decoded (`umap_background`)."""
    log = print if progress else (lambda *a, **kw: None)
    out = make_outdir(outdir)
    epoch = resolve_epoch(run, epoch)
    z = np.asarray(run.latents(epoch), dtype=np.float32)
    n, zdim = z.shape
    log(f"analyze: {n} particles, zdim {zdim}, epoch {epoch}")
    summary = {"run": str(run.path), "epoch": epoch, "n_particles": n, "zdim": zdim, "k": k,
               "box": int(D or run.D), "figures": {}, "maps": {}, "seconds": {}}
    clock = [time.perf_counter()]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        summary["seconds"][stage] = round(now - clock[0], 2)
        clock[0] = now

    umap_job = None
    if zdim > 1 and not skip_umap:
        cache = cache_dir if cache_dir is not None else analysis_cache_dir(run)
        umap_job = embed.UmapJob(z, cache, epoch, seed, progress, background=umap_background)
        lap("umap_start")
    try:
        res = embed.pca(z)
        summary["pca_explained_variance_ratio"] = res.explained_variance_ratio.tolist()
        km = sampling.kmeans(z, k=min(k, n), seed=seed)
        with atomic_open(out / "kmeans_labels.txt", "w") as f:
            np.savetxt(f, km.labels, fmt="%d")
        lap("pca_kmeans")
        if zdim == 1:
            counts, edges = embed.latent_histogram(z)
            plots.plot_histogram(out / "z_histogram.png", counts, edges, "latent z (zdim 1)")
            summary["figures"]["latent"] = ["z_histogram.png"]
        else:
            evr = res.explained_variance_ratio
            axes = (f"PC1 ({100 * evr[0]:.0f}%)", f"PC2 ({100 * evr[1]:.0f}%)")
            summary["figures"]["pca"] = _scatter_pair(out, "pca", res.coords[:, :2], axes,
                                                      "PCA", km)
            lap("pca_plots")
        _report_maps(run, out, z, res, km, summary, D, epoch, n_traverse, progress)
        lap("maps")
        if umap_job is not None:
            emb = umap_job.result()
            lap("umap_wait")
            summary["figures"]["umap"] = _scatter_pair(out, "umap", emb, ("UMAP1", "UMAP2"),
                                                       "UMAP", km)
    finally:
        if umap_job is not None:
            umap_job.close()
    curve = loss_curve(run.metrics())
    if curve is not None:
        plots.plot_curves(out / "loss.png", curve[0], curve[1], "training loss", "epoch",
                          "loss", logy=bool(np.all(curve[1]["loss"] > 0)))
        summary["figures"]["loss"] = ["loss.png"]
    changes = run_pose_changes(run)
    if changes:                 # ab initio: how much the poses still changed, per epoch
        phases = {m["epoch"]: m["poses"] for m in run.metrics() if "poses" in m}
        plot_pose_changes(out / "pose_changes.png", changes, phases)
        summary["figures"]["pose changes"] = ["pose_changes.png"]
    pose_epochs = sorted(e for e in run.pose_files() if e is not None)
    if pose_epochs:             # ab initio: how the views spread over the sphere, per epoch
        from cryoscape.core.analysis.viewing import plot_viewing_directions
        names = [f"viewing_directions.{e}.png" for e in pose_epochs]
        for e, name in zip(pose_epochs, names):
            plot_viewing_directions(out / name, run.poses(e)[0], f"viewing directions, epoch {e}")
        summary["figures"]["viewing directions"] = names
    with atomic_open(out / "summary.json", "w") as f:
        json.dump(summary, f, indent=1)
    write_index_html(out / "index.html", summary)
    log(f"analyze: report in {out / 'index.html'}")
    return summary


def _report_maps(run, out, z, res, km, summary, D, epoch, n_traverse, progress) -> None:
    """k-means maps (with medoids.txt) and PC1/PC2 traversals, each a series with a .cxc
    and a montage of the maps' projections."""
    from cryoscape.core.io.mrc import read_mrc

    def add(key, series, titles, title):
        summary["maps"][key] = _series_info(series, out)
        plots.plot_map_montage(out / f"{key}_maps.png", [read_mrc(p)[0] for p in series.paths],
                               titles, title)
        summary["figures"].setdefault("maps", []).append(f"{key}_maps.png")

    series = write_maps(run, z[km.medoids], out / "kmeans", D=D, epoch=epoch,
                        progress=progress, desc=f"k-means maps ({km.k})")
    with atomic_open(out / "kmeans" / "medoids.txt", "w") as f:
        f.write("# map  particle  cluster_size\n")
        for i, (m, c) in enumerate(zip(km.medoids, km.counts)):
            f.write(f"{i:3d} {m:8d} {c:8d}\n")
    add("kmeans", series, [f"{i} (n={c})" for i, c in enumerate(km.counts)],
        "k-means maps (projections along z)")
    for pc in range(1, min(2, len(res.components)) + 1):
        zs, values = trajectory.pc_traversal(z, pc=pc, n=n_traverse, pca_result=res)
        series = write_maps(run, zs, out / f"pc{pc}", D=D, epoch=epoch, progress=progress,
                            desc=f"PC{pc} traversal")
        add(f"pc{pc}", series, [f"{v:.2f}" for v in values],
            f"PC{pc} traversal, 5th to 95th percentile (projections along z)")


def _series_info(series, root: Path) -> dict:
    return {"files": [str(p.relative_to(root)) for p in series.paths],
            "cxc": str(series.cxc.relative_to(root)), "level": series.level}


def write_index_html(path: Path, s: dict) -> Path:
    """A short, self-contained page showing the report's figures and listing its maps."""
    e = html.escape
    parts = [("<!doctype html><html><head><meta charset='utf-8'><title>cryoscape analysis"
             "</title><style>body{font-family:sans-serif;margin:1.5em;max-width:1200px}"
             "img{max-width:32%;margin:2px;border:1px solid #ddd}img.wide{max-width:100%}"
             "code{background:#f4f4f4}</style></head><body>"),
             (f"<h1>cryoscape analysis</h1><p>Run <code>{e(s['run'])}</code>, epoch "
             f"{e(str(s['epoch']))}: {s['n_particles']} particles, zdim {s['zdim']}.</p>")]
    evr = s.get("pca_explained_variance_ratio") or []
    if evr:
        parts.append("<p>PCA explained variance: " + ", ".join(
            f"PC{i + 1} {100 * v:.1f}%" for i, v in enumerate(evr[:8])) + "</p>")
    titles = {"latent": "Latent distribution", "pca": "PCA", "umap": "UMAP",
              "loss": "Training", "maps": "Maps at a glance"}
    order = list(titles)
    for key, files in sorted(s["figures"].items(),
                             key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
        parts.append(f"<h2>{titles.get(key, key)}</h2>")
        cls = " class='wide'" if key == "maps" else ""
        parts += [f"<a href='{e(f)}'><img{cls} src='{e(f)}' alt='{e(f)}'></a>" for f in files]
    parts.append("<h2>Maps</h2><p>Open a series in ChimeraX with "
                 "<code>chimerax FOLDER/chimerax.cxc</code> (box "
                 f"{s['box']}).</p><ul>")
    names = {"kmeans": f"k-means centres (k = {s['k']}, the particle nearest each centre)",
             "pc1": "PC1 traversal (5th to 95th percentile)",
             "pc2": "PC2 traversal (5th to 95th percentile)"}
    for key, info in s["maps"].items():
        parts.append(f"<li>{e(names.get(key, key))}: {len(info['files'])} maps, "
                     f"<a href='{e(info['cxc'])}'>{e(info['cxc'])}</a>, level "
                     f"{info['level']:.4g}</li>")
    parts.append("</ul></body></html>\n")
    with atomic_open(path, "w") as f:
        f.write("\n".join(parts))
    return path
