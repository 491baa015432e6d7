"""Running a training command as the benchmarks time it: in its own process, its output in a
log, its torch threads set through OMP/MKL_NUM_THREADS."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def timed(cmd: list[str], threads: int, log: Path, name: str | None = None,
          append: bool = False) -> float:
    """Run `cmd` on `threads` threads, its output written to `log` (appended to with `append`);
    its wall time in seconds. A failure ends the benchmark with the log's last lines."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t = time.perf_counter()
    with open(log, "a" if append else "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
    wall = time.perf_counter() - t
    if r.returncode:
        sys.exit(f"{name or ' '.join(map(str, cmd))} failed ({r.returncode}); see {log}:\n"
                 f"{log.read_text(errors='replace')[-3000:]}")
    return wall
