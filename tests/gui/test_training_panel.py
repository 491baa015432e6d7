"""The training panel: `cryoscape train`'s defaults, a log that shows the child's lines (a
progress bar's redraws apart) and follows the newest, and an opened run that fills the form
and can be continued."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.gui.conftest import WAIT_MS


@pytest.fixture
def panel(window):
    return window.training


def _arg(args, flag):
    return args[args.index(flag) + 1]


def test_defaults_are_the_cli_defaults(panel):
    from cryoscape.core.train import TrainConfig

    cli = TrainConfig(particles="p.mrcs")
    panel.particles.setText("p.mrcs")
    panel.outdir.setText("RUN")
    args = panel.train_args()
    for flag, value in (("--zdim", cli.zdim), ("-n", cli.num_epochs), ("-b", cli.batch_size),
                        ("--enc-layers", cli.enc_layers), ("--enc-dim", cli.enc_dim),
                        ("--dec-layers", cli.dec_layers), ("--dec-dim", cli.dec_dim)):
        assert _arg(args, flag) == str(value), flag
    assert cli.enc_dim == cli.dec_dim == 1024                     # cryoDRGN's 3 x 1024
    assert "3 x 1024" in panel.dec_dim.toolTip() and "faster" in panel.dec_dim.toolTip()
    assert not panel.continue_button.isEnabled()
    assert "--downsample" not in args                             # the full box
    panel.downsample.setValue(64)
    assert _arg(panel.train_args(), "--downsample") == "64"


def test_output_lines_without_progress_redraws(qtbot, panel, tmp_path):
    """The child's lines go to the log; a progress bar's '\\r' redraws only to the progress
    line, its final state to the log; the log follows the newest line."""
    import os
    import time

    from cryoscape.app.gui.services.training import TrainingWatcher

    script = ("import sys\n"
              "print('reading particles', flush=True)\n"
              "for k in (10, 50, 90):    # each redraw waits until the watcher has shown it\n"
              "    sys.stdout.write(f'\\rtrain: {k}%|##'); sys.stdout.flush()\n"
              "    sys.stdin.readline()\n"
              "sys.stdout.write('\\rtrain: 100%|####|\\n')\n"
              "print('\\n'.join(f'line {i}' for i in range(300)))\n")
    w = TrainingWatcher([], tmp_path / "run", parent=panel)
    lines, progress = [], []
    w.log.connect(lines.append)
    w.progress.connect(progress.append)
    w.log.connect(panel._on_log)
    w.process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
    os.set_blocking(w.process.stdout.fileno(), False)
    buf, shown, end = b"", 0, time.monotonic() + WAIT_MS / 1000
    while w.process.poll() is None and time.monotonic() < end:
        buf = w._read_output(buf)
        if len(progress) > shown:
            shown = len(progress)
            w.process.stdin.write(b"\n")
            w.process.stdin.flush()
        qtbot.wait(10)
    w._read_output(buf, final=True)
    w.process.stdin.close()
    w.process.stdout.close()
    assert w.process.wait() == 0
    assert lines[:2] == ["reading particles", "train: 100%|####|"]
    assert lines[2:] == [f"line {i}" for i in range(300)]
    assert progress == ["train: 10%|##", "train: 50%|##", "train: 90%|##"]
    bar = panel.log.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()     # the newest line in view
    assert panel.log.toPlainText().splitlines()[-1] == "line 299"


@pytest.mark.slow
def test_opened_run_fills_the_form_and_continues(qtbot, window, tiny_data, tmp_path):
    """A one-epoch run opened in the explorer fills the panel (its inputs, zdim and
    architecture); raising Epochs lets Continue train epoch 2 with `--resume`."""
    from cryoscape.core.train import train

    from tests.train_fixtures import tiny_config

    rundir = tmp_path / "run"
    cfg = tiny_config(str(tiny_data / "particles.star"), num_epochs=1, zdim=2, enc_layers=1,
                      enc_dim=24, dec_layers=2, dec_dim=40, downsample=24)
    train(cfg, rundir, progress=False)
    window.open_run(rundir)
    assert not window.errors, window.errors
    tp = window.training
    assert tp.particles.text() == str(tiny_data / "particles.star")
    assert tp.outdir.text() == str(rundir)
    assert (tp.zdim.value(), tp.epochs.value(), tp.batch.value()) == (2, 1, 16)
    assert (tp.enc_layers.value(), tp.enc_dim.value()) == (1, 24)
    assert (tp.dec_layers.value(), tp.dec_dim.value()) == (2, 40)
    assert tp.downsample.value() == 24 and _arg(tp.train_args(), "--downsample") == "24"
    assert len(tp.loss_plot.curve.xData) == 1
    assert not tp.continue_button.isEnabled()                    # finished: 1 of 1 epochs
    tp.epochs.setValue(2)
    assert tp.continue_button.isEnabled()
    with qtbot.waitSignal(window.explorer.training.finished, timeout=WAIT_MS) as done:
        tp.continue_button.click()
        assert "--resume" in tp.log.toPlainText().splitlines()[0]
    assert done.args[0] == 0, done.args[1]
    assert (rundir / "weights.2.pkl").is_file()
    assert tp.log.toPlainText().splitlines()[-1] == f"training finished: 2 epochs, in {rundir}"
    assert window.statusBar().currentMessage().startswith("Training finished")
    qtbot.waitUntil(lambda: window.state.epoch == 2, timeout=WAIT_MS)
    assert not tp.continue_button.isEnabled() and not window.errors
