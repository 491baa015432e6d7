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
        window.explorer.embedding.set_kind("UMAP")
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
    st, volumes, trajectories = window.state, window.explorer.volumes, \
        window.explorer.trajectories
    if st.homogeneous:
        if args.movie or args.particle is not None or args.z is not None:
            raise CryoscapeError(f"{st.run.path}: a homogeneous run (zdim 0) has one map and no "
                                 "latent space: no --particle, --z or --movie")
    else:
        _wait(window, lambda: st.labels is not None, args.timeout, "the latent analysis")
        if args.umap and st.zdim > 1:          # the PCA view shows while UMAP computes
            _wait(window, lambda: st.embedding_kind == "UMAP", args.timeout, "the UMAP view")
    if args.movie:
        st.set_waypoints(args.path)
        trajectories.compute_path(n=args.frames)
        _wait(window, lambda: st.path_z is not None, args.timeout, "the trajectory")
        written = []
        trajectories.task_done.connect(
            lambda name, res: written.append(res) if name == "movie" else None)
        trajectories.movie_meshes(args.movie)
        _wait(window, lambda: written, args.timeout, "the movie")
        print(f"wrote {written[0]}")
    if args.screenshot:
        if st.homogeneous:
            pass                               # its one map is decoding already
        elif args.z is not None:
            z = np.asarray(args.z, np.float32)
            if len(z) != st.zdim:
                raise CryoscapeError(f"--z has {len(z)} values; the run's zdim is {st.zdim}")
            volumes.decode_z(z)
        else:
            i = args.particle if args.particle is not None else int(st.centre_index[0])
            if not 0 <= i < st.n:
                raise CryoscapeError(f"--particle {i}: the run has particles 0..{st.n - 1}")
            volumes.decode_particle(i)
        shown = window.volume
        _wait(window, lambda: shown.shown is not None and shown.shown.source == "exact",
              args.timeout, "the decoded volume")
        directions = window.explorer.poses.directions
        _wait(window, lambda: directions.counts is not None or directions.note != "no run",
              args.timeout, "the viewing directions")
        window.wait_for(lambda: False, 0.3)
        out = window.save_screenshot(Path(args.screenshot))
        print(f"wrote {out}")


def _wait(window, condition, timeout: float, what: str) -> None:
    """Process events until `condition()`; an error dialog or the timeout raise."""
    if not window.wait_for(lambda: condition() or window.errors, timeout):
        raise CryoscapeError(f"timed out waiting for {what}")
    if window.errors:
        raise CryoscapeError(window.errors[-1])


DEMO_HINT = "Click a point to see its structure"


def next_run_dir(outdir: Path) -> Path:
    """OUTDIR/run-NNN, numbered after the demo's runs already there."""
    taken = [int(p.name[4:]) for p in Path(outdir).glob("run-*") if p.name[4:].isdigit()]
    return Path(outdir) / f"run-{max(taken, default=0) + 1:03d}"


def run_demo(args, data: Path, t_start: float | None = None) -> int:
    """`cryoscape demo`: the explorer with training of the simulated data already started in
    a new numbered run folder; the first cluster's structure is shown (and follows the epochs)
    until the user clicks a point."""
    import time

    from cryoscape.app.gui.app import application, report_unexpected_errors
    from cryoscape.app.gui.main_window import MainWindow
    from cryoscape.app.gui.widgets.guard import guard

    t_start = time.perf_counter() if t_start is None else t_start
    rundir = next_run_dir(args.outdir)
    earlier = sorted(p.name for p in Path(args.outdir).glob("run-*"))
    app = application()
    window = MainWindow()
    report_unexpected_errors(window)
    # Small, fast settings that separate the states within a few dozen short epochs, from the
    # .star (poses, and metadata to colour by); training finds the images' contrast itself.
    window.training.configure(str(data / "particles.star"), str(rundir), zdim=args.zdim,
                              epochs=args.epochs, batch=16, enc=(2, args.width),
                              dec=(args.layers, args.width),
                              extra=f"--threads {args.threads} --lr 2e-3 --domain hartley")
    window.docks["Training"].show()
    window.latent.set_hint(DEMO_HINT)
    window.show()
    _follow_first_cluster(window, args.exit_after_first_epoch, t_start)
    if earlier:
        print(f"earlier demo runs in {args.outdir}: {', '.join(earlier)} "
              "(open one with `cryoscape gui FOLDER`)")
    if args.no_train:
        print(f"the Training panel is filled in: Start trains into {rundir}")
    else:
        print(f"training into {rundir}", flush=True)
        guard(window.activity, window.training.start)
    return app.exec()


def _follow_first_cluster(window, exit_when_shown: bool, t_start: float) -> None:
    """Show the structure at the first cluster's centre as soon as an epoch's latents and
    clusters are there, again for every new epoch, until the user clicks a point (which also
    hides the hint). `exit_when_shown`: say how long the first latents and the first
    structure took, and close (benchmarks, tests)."""
    import time

    st, shown_epochs, clicked, latents_at = window.state, [], [], []

    def embedding_changed():
        if st.labels is None or clicked or st.epoch in shown_epochs:
            return
        shown_epochs.append(st.epoch)
        latents_at.append(time.perf_counter() - t_start)
        window.explorer.volumes.decode_particle(int(st.centre_index[0]))

    def user_click(_):
        clicked.append(True)
        window.latent.set_hint(None)

    def surface_shown(res):
        if exit_when_shown and res.volume is not None and res.volume.source == "exact":
            print(f"first epoch's latents on screen after {latents_at[0]:.1f} s; its first "
                  f"structure after {time.perf_counter() - t_start:.1f} s", flush=True)
            window.close()
    st.embedding_changed.connect(embedding_changed)
    window.latent.particle_clicked.connect(user_click)
    window.explorer.volumes.shown.mesh_changed.connect(surface_shown)
