"""Explorer latency benchmark (run under an X server: `xvfb-run -a python benchmarks/gui_latency.py`).

Measures, on this machine:
  1. click-to-first-isosurface: from the decode cache, and an exact D=32 preview (3x256 decoder);
  2. time to the exact full map at D=64 and D=128 for the paper's (10x128) and cryoDRGN's
     default (3x1024) decoders, with the decoder's achieved FLOP/s against the matmul peak;
  3. the longest event-loop stall while a training child process runs and decodes are requested;
  4. scatter pan/zoom frame time with 1,000,000 points (drawn subset and all points);
  5. `cryoscape demo` from a cold start: seconds until the first epoch's latents are on screen.
Writes its table into BENCHMARKS.md (section `gui_latency`) and prints it.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
import numpy as np
import torch
from _report import command, write_section
from train_throughput import matmul_peak

ROWS: list[tuple[str, str, str]] = []


def row(what: str, value: str, goal: str = "") -> None:
    ROWS.append((what, value, goal))
    print(f"{what:70s} {value:>22s}  {goal}", flush=True)


class ModelRun:
    """The Run API over a randomly initialised decoder (timing only: the weights do not matter);
    decodes as cryoscape runs do (only the sphere |k| <= 0.5, half of it for Fourier decoders)."""

    def __init__(self, D: int, layers: int, width: int, zdim: int = 8, n: int = 20000,
                 pe_type: str = "gaussian", domain: str = "fourier"):
        from cryoscape.core.models import build_model

        torch.manual_seed(0)
        self.D, self.apix, self.zdim, self.epochs = D, 1.0, zdim, [1]
        self.path, self.particles_path, self.config = Path(tempfile.gettempdir()), None, {}
        args = {"qlayers": 1, "qdim": 64, "players": layers, "pdim": width, "zdim": zdim,
                "pe_type": pe_type, "domain": domain}
        self.model = build_model(args, D + 1).eval()
        self.domain = domain
        self._z = np.random.default_rng(0).normal(size=(n, zdim)).astype(np.float32)

    def latents(self, epoch=None):
        return self._z

    def voxel_size(self, D=None):
        return self.apix * self.D / (D or self.D)

    def decode(self, z, D=None, epoch=None, bf16=False):
        from cryoscape.core.decode import decode_volumes

        return decode_volumes(self.model.decoder, torch.as_tensor(np.asarray(z, np.float32)),
                              self.D, (0.0, 1.0), box=D, sphere=True, bf16=bf16).numpy()

    def flops_per_map(self, D: int) -> float:
        """2 x multiply-adds of the decoder's linear layers over the voxels it evaluates."""
        per_voxel = 2 * sum(m.in_features * m.out_features for m in self.model.decoder.modules()
                            if isinstance(m, torch.nn.Linear))
        voxels = 4 / 3 * np.pi * (D / 2) ** 3 * (0.5 if self.domain == "fourier" else 1.0)
        return per_voxel * voxels


def bench_decode(threads: int, peak: float) -> None:
    """Exact maps; FLOP/s against the best matmul peak seen so far (a busy moment reads low)."""
    gui_threads = torch.get_num_threads()
    torch.set_num_threads(threads)              # the engine's decoder on every core
    for name, layers, width, pe, domain in (("paper 10x128", 10, 128, "geom_lowf", "hartley"),
                                            ("cryoDRGN 3x1024", 3, 1024, "gaussian", "fourier")):
        for D in (64, 128):
            run = ModelRun(D, layers, width, n=10, pe_type=pe, domain=domain)
            z = run.latents()[:1]
            run.decode(z, D=16)                              # warm-up
            times = []
            for _ in range(1 if D == 128 else 2):
                t = time.perf_counter()
                run.decode(z)
                times.append(time.perf_counter() - t)
            t = min(times)
            rate = run.flops_per_map(D) / t
            peak = max(peak, matmul_peak(reps=5))
            row(f"exact map D={D}, {name} decoder", f"{t * 1000:.0f} ms",
                f"{rate / 1e9:.1f} GFLOP/s = {rate / peak:.0%} of peak (goal >= 50%)")
    torch.set_num_threads(gui_threads)


def bench_click(app) -> None:
    from cryoscape.app.gui.main_window import MainWindow
    from PyQt6.QtCore import QSettings

    run = ModelRun(64, 3, 256, n=20000)
    w = MainWindow(settings=QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"),
                                      QSettings.Format.IniFormat), restore=False)
    w.resize(1280, 760)
    w.show()
    ex = w.explorer
    ex.runs.set_run(run)
    cache = ex.volumes.cache
    w.wait_for(lambda: len(cache.index) > 0 and len(cache.meshes) == len(cache.index), 300)
    row("decode cache filled (k-means centres + 8x8 grid medoids, D=24)",
        f"{len(cache.index)} maps", "")
    shown, mesh_at = {}, {}

    def on_mesh(res):                      # a new surface was handed to the 3D view ...
        if res.volume is not None and res.volume.source not in mesh_at:
            mesh_at[res.volume.source] = res.volume.t0

    def on_draw(event):                    # ... and this frame put it on screen
        for source, t0 in list(mesh_at.items()):
            shown.setdefault(source, time.perf_counter() - t0)
    ex.volumes.shown.mesh_changed.connect(on_mesh)
    w.volume.view.canvas.events.draw.connect(on_draw)
    cache_t, preview_t, exact_t = [], [], []
    for i in range(5):
        shown.clear()
        mesh_at.clear()
        ex.volumes.decode_particle(100 * i + 7)
        w.wait_for(lambda: "exact" in shown, 120)
        cache_t.append(shown.get("cache", np.nan))
        preview_t.append(shown.get("preview", np.nan))
        exact_t.append(shown.get("exact", np.nan))
    row("click -> first isosurface on screen (nearest cached map)",
        f"{np.nanmedian(cache_t) * 1000:.1f} ms", "goal < 100 ms")
    row("click -> exact D=32 preview isosurface (3x256 decoder)",
        f"{np.nanmedian(preview_t) * 1000:.0f} ms", "goal < 150 ms")
    row("click -> exact full map D=64 isosurface (3x256 decoder)",
        f"{np.nanmedian(exact_t) * 1000:.0f} ms", "")
    repaint = []
    for _ in range(10):
        t = time.perf_counter()
        w.repaint()
        app.processEvents()
        repaint.append(time.perf_counter() - t)
    row("one repaint of the whole window, idle", f"{np.median(repaint) * 1000:.0f} ms",
        "Qt composites the OpenGL view in software here (Mesa llvmpipe under Xvfb): the floor "
        "under every frame that changes the window")
    stall_while(w, app, ex)
    w.close()


def stall_while(w, app, ex, seconds: float = 8.0) -> None:
    """Longest gap between 5 ms timer ticks while a training child process runs, the window
    follows its epochs, and the user clicks a point every 250 ms (preview + full decode)."""
    from cryoscape.core.simulate import simulate
    from PyQt6.QtCore import QTimer

    tmp = Path(tempfile.mkdtemp(prefix="cryoscape_bench_"))
    simulate("discrete", 1000, tmp / "data", D=32, snr=5.0, states=3, seed=0)
    rundir = tmp / "run"
    w.training.configure(str(tmp / "data" / "particles.mrcs"), str(rundir),
                         poses=str(tmp / "data" / "poses.pkl"), zdim=2, epochs=100, batch=16,
                         enc=(2, 64), dec=(3, 64), extra="--threads 1 --no-progress")
    w.training.start()
    w.wait_for(lambda: ex.state.run is not None and Path(ex.state.run.path) == rundir
               and ex.state.labels is not None, 300)
    ticks = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    end = time.perf_counter() + seconds
    k, epoch0 = 0, ex.state.epoch
    while time.perf_counter() < end:
        ex.volumes.decode_particle(k % ex.state.n)
        k += 37
        t_next = time.perf_counter() + 0.25
        while time.perf_counter() < t_next:
            app.processEvents()
            time.sleep(0.001)
    timer.stop()
    epochs = ex.state.epoch - epoch0
    w.training.stop()
    w.wait_for(lambda: not ex.training.running, 60)
    gaps = np.diff(ticks)
    row(f"longest event-loop stall ({seconds:.0f} s: training child, {epochs} new epochs shown, "
        f"{k // 37} clicks decoded)", f"{gaps.max() * 1000:.0f} ms",
        f"goal < 50 ms (99th percentile {np.percentile(gaps, 99) * 1000:.0f} ms, "
        f"median {np.median(gaps) * 1000:.1f} ms)")


def bench_scatter(app, n: int = 1_000_000) -> None:
    from cryoscape.app.gui.models.colour import colouring, colourise
    from cryoscape.app.gui.visuals.latent_view import LatentView

    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.normal(size=(n // 2, 2)), rng.normal(size=(n - n // 2, 2)) + 4])
    labels = (xy[:, 0] > 2).astype(int)
    for by in ("k-means", "density"):
        t = time.perf_counter()
        colouring(by, labels, xy, None)
        row(f"colouring {n:,} points by {by} (colouring thread, off the GUI thread)",
            f"{(time.perf_counter() - t) * 1000:.0f} ms", "")
    for max_drawn, frames in ((None, 5), (n, 2)):
        lv = LatentView() if max_drawn is None else LatentView(max_drawn=max_drawn)
        lv.resize(900, 700)
        lv.show()
        t = time.perf_counter()
        lv.set_points(xy, colours=colourise(labels))
        app.processEvents()
        lv.plot.viewport().repaint()
        t_load = time.perf_counter() - t
        if max_drawn is None:          # a new epoch: new points and their colours, GUI thread
            refresh, colours = [], colourise(1 - labels)
            for _ in range(3):
                moved = xy + rng.normal(0, 0.01, xy.shape)
                t = time.perf_counter()
                lv.set_points(moved, keep_view=True, colours=colours)
                app.processEvents()
                lv.plot.viewport().repaint()
                refresh.append(time.perf_counter() - t)
            row(f"scatter refresh for a new epoch, {n:,} points ({lv.n_drawn:,} drawn)",
                f"{np.median(refresh) * 1000:.0f} ms", "GUI thread: points and brushes handed "
                "to pyqtgraph, first frame (colours computed in a worker)")
        pan, zoom = [], []
        for k in range(2 * frames):
            t = time.perf_counter()
            if k % 2:
                lv.viewbox.scaleBy((0.9, 0.9))       # zoom: every drawn point is drawn again
            else:
                lv.viewbox.translateBy((0.05, 0.03))  # pan: the cached point layer moves
            app.processEvents()
            lv.plot.viewport().repaint()
            app.processEvents()
            (zoom if k % 2 else pan).append(time.perf_counter() - t)
        row(f"scatter zoom frame, {n:,} points ({lv.n_drawn:,} drawn)",
            f"{np.median(zoom) * 1000:.0f} ms", f"goal < 50 ms (load {t_load:.1f} s)")
        row(f"scatter pan frame, {n:,} points ({lv.n_drawn:,} drawn)",
            f"{np.median(pan) * 1000:.0f} ms", "goal < 50 ms")
        lv.close()
        lv.deleteLater()
        app.processEvents()


def bench_demo() -> None:
    out = Path(tempfile.mkdtemp(prefix="cryoscape_demo_"))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "cryoscape.app.cli", "demo", "-o", str(out),
                        "--exit-after-first-epoch"], check=False, capture_output=True, text=True,
                       timeout=600)
    wall = time.perf_counter() - t
    m = re.search(r"after ([\d.]+) s", r.stdout)
    value = f"{float(m.group(1)):.1f} s" if m else f"failed (exit {r.returncode})"
    row("`cryoscape demo` cold start -> first epoch's latents on screen", value,
        f"goal < 60 s (process wall {wall:.1f} s)")
    if not m:
        print(r.stdout[-2000:], r.stderr[-2000:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["decode", "click", "scatter", "demo"], help="parts to skip")
    args = p.parse_args()
    threads = torch.get_num_threads()
    peak = matmul_peak()
    row("float32 matmul peak (torch, 2048^2)", f"{peak / 1e9:.1f} GFLOP/s",
        f"{threads} threads; load average {os.getloadavg()[0]:.1f} (machine shared)")
    from cryoscape.app.gui.app import application

    app = application()                          # the GUI decodes with one core fewer
    if "scatter" not in args.skip:
        bench_scatter(app)
    if "click" not in args.skip:
        bench_click(app)
    if "decode" not in args.skip:
        bench_decode(threads, peak)
    if "demo" not in args.skip:
        bench_demo()
    lines = ["| measurement | result | goal / notes |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in ROWS]
    text = (f"## GUI latency ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs)\n\n"
            f"`xvfb-run -a {command(__file__)}`\n\n" + "\n".join(lines) + "\n")
    print(text)
    write_section("gui_latency", text)


if __name__ == "__main__":
    main()
