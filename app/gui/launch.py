"""Start the explorer from the command line: interactive, or scripted (screenshot, movie)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from cryoscape.core.errors import CryoscapeError


def run_gui(args) -> int:
    """`cryoscape gui`: see app/commands/gui.py for the options."""
    from cryoscape.app.gui.app import application, report_unexpected_errors
    from cryoscape.app.gui.main_window import MainWindow
    from PyQt6.QtCore import QSettings

    scripted = bool(args.screenshot or args.movie)
    if args.movie and not args.path:
        raise CryoscapeError("--movie needs --path I J (the particles the trajectory visits)")
    if scripted and not args.run:
        raise CryoscapeError("--screenshot and --movie need a run directory")
    app = application()
    settings = QSettings() if not scripted else QSettings(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, "cryoscape", "scripted")
    window = MainWindow(settings=settings, restore=not scripted)
    report_unexpected_errors(window)
    if args.umap:
        window.embedding_box.setCurrentText("UMAP")
    if args.threshold is not None:
        window.volume.set_sigma(args.threshold)
    window.show()
    if args.run:
        window.open_run(args.run, args.epoch)
    if not scripted:
        return app.exec()
    try:
        if window.errors:
            raise CryoscapeError(window.errors[-1])
        _script(window, args)
    finally:
        window.close()
    return 0


def _script(window, args) -> None:
    ex, st = window.explorer, window.state
    if st.homogeneous:
        if args.movie or args.particle is not None or args.z is not None:
            raise CryoscapeError(f"{st.run.path}: a homogeneous run (zdim 0) has one map and no "
                                 "latent space: no --particle, --z or --movie")
    else:
        _wait(window, lambda: st.labels is not None, args.timeout, "the latent analysis")
    if args.movie:
        ex.state.set_waypoints(args.path)
        ex.compute_path(n=args.frames)
        _wait(window, lambda: st.path_z is not None, args.timeout, "the trajectory")
        written = []
        ex.task_done.connect(lambda name, res: written.append(res) if name == "movie" else None)
        window.export_movie(args.movie)
        _wait(window, lambda: written, args.timeout, "the movie")
        print(f"wrote {written[0]}")
    if args.screenshot:
        if st.homogeneous:
            pass                               # its one map is decoding already
        elif args.z is not None:
            z = np.asarray(args.z, np.float32)
            if len(z) != st.zdim:
                raise CryoscapeError(f"--z has {len(z)} values; the run's zdim is {st.zdim}")
            ex.decode_z(z)
        else:
            i = args.particle if args.particle is not None else int(st.centre_index[0])
            if not 0 <= i < st.n:
                raise CryoscapeError(f"--particle {i}: the run has particles 0..{st.n - 1}")
            ex.decode_particle(i)
        shown = window.volume
        _wait(window, lambda: shown.shown is not None and shown.shown.source == "exact",
              args.timeout, "the decoded volume")
        window.wait_for(lambda: False, 0.3)
        out = window.save_screenshot(Path(args.screenshot))
        print(f"wrote {out}")


def _wait(window, condition, timeout: float, what: str) -> None:
    """Process events until `condition()`; an error dialog or the timeout raise."""
    if not window.wait_for(lambda: condition() or window.errors, timeout):
        raise CryoscapeError(f"timed out waiting for {what}")
    if window.errors:
        raise CryoscapeError(window.errors[-1])


def run_demo(args, data: Path, t_start: float | None = None) -> int:
    """`cryoscape demo`: the explorer with training of the simulated data already started."""
    import time

    from cryoscape.app.gui.app import application, report_unexpected_errors
    from cryoscape.app.gui.main_window import MainWindow

    t_start = time.perf_counter() if t_start is None else t_start
    app = application()
    window = MainWindow()
    report_unexpected_errors(window)
    rundir = Path(args.outdir) / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    # Small, fast settings that separate the states within a few dozen short epochs. The
    # simulated images have no CTF and white protein, so they must not be inverted.
    window.training.configure(str(data / "particles.mrcs"), str(rundir),
                              poses=str(data / "poses.pkl"), zdim=args.zdim, epochs=args.epochs,
                              batch=16, enc=(2, args.width), dec=(args.layers, args.width),
                              extra=f"--threads {args.threads} --uninvert-data --lr 2e-3 "
                                    "--domain hartley")
    window.docks["Training"].show()
    window.show()
    if args.exit_after_first_epoch:
        def shown():
            if window.state.labels is not None and window.latent.n_points:
                print(f"first epoch's latents on screen after "
                      f"{time.perf_counter() - t_start:.1f} s", flush=True)
                window.close()
        window.state.embedding_changed.connect(shown)
    if not args.no_train:
        window._guard(window.training.start)
    return app.exec()
