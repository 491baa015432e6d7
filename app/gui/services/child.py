"""Heavy torch work (a landscape's decoding, the per-image fit) in a spawned child process: in
a worker thread it would hold the GIL often enough to stutter the GUI, and a child can be ended
at once when the run changes or the explorer closes. Progress comes back as it happens."""
from __future__ import annotations

import queue
import traceback

from cryoscape.core.errors import CryoscapeError


def run_in_child(fn, args=(), kwargs=None, *, progress=None, stop=lambda: False,
                 what: str = "job"):
    """`fn(*args, progress=report, **kwargs)` in a spawned child process (fn and its arguments
    picklable; `report(*values)` sends `progress(*values)` back here). Returns fn's result,
    or None as soon as `stop()` turns true (the child is terminated); the child's error is
    raised as a CryoscapeError (`what`, in words, names the work). Call it from a worker
    thread: it waits for the child."""
    import multiprocessing

    from cryoscape.app.gui.services.jobs import lower_priority

    ctx = multiprocessing.get_context("spawn")
    messages = ctx.Queue()
    child = ctx.Process(target=_child_main, args=(messages, fn, args, kwargs or {}), daemon=True,
                        name=f"cryoscape {what}")
    child.start()
    lower_priority(child.pid)                # the GUI gets the cores first
    try:
        while True:
            if stop():
                return None
            try:
                kind, *payload = messages.get(timeout=0.1)
            except queue.Empty:
                if not child.is_alive() and messages.empty():
                    raise CryoscapeError(f"the child process computing the {what} ended "
                                         f"without a result (exit code {child.exitcode})"
                                         ) from None
                continue
            if kind == "progress":
                if progress is not None:
                    progress(*payload)
            elif kind == "result":
                return payload[0]
            else:
                raise CryoscapeError(payload[0])
    finally:
        if child.is_alive():
            child.terminate()
        child.join()
        messages.close()


def _child_main(messages, fn, args, kwargs) -> None:
    """The child: run fn, sending its progress, then its result or its error."""
    try:
        result = fn(*args, progress=lambda *v: messages.put(("progress", *v)), **kwargs)
        messages.put(("result", result))
    except CryoscapeError as e:
        messages.put(("error", str(e)))
    except Exception as e:  # noqa: BLE001 (reported in the explorer)
        traceback.print_exc()
        messages.put(("error", f"{type(e).__name__}: {e}"))


def on_run(fn, run_path, *args, device: str = "cpu", progress=None, **kwargs):
    """`fn(Run.open(run_path), *args, progress=progress, **kwargs)`, the run on torch
    `device`: a job on a run folder, opened in the child (a Run itself, its models loaded,
    is not worth pickling)."""
    import torch
    from cryoscape.core.run import Run

    run = Run.open(run_path)
    run.device = torch.device(device)
    return fn(run, *args, progress=progress, **kwargs)
