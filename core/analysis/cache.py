"""Where a run's analyses (UMAP embeddings, landscapes, per-image fits) are cached, for the CLI
and the explorer alike: the run's own `analysis_cache` folder, or one shared folder in the
temporary directory for runs whose folders must stay untouched."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def analysis_cache_dir(run) -> Path:
    """Where a run's analyses (UMAP, landscape, per-image fit) are cached: `RUN/analysis_cache`,
    or, when the run directory is not writable (e.g. a run shared read-only),
    `shared_cache_dir()` (created where missing)."""
    d = own_cache_dir(run)
    try:
        if _writable(d.parent):
            d.mkdir(exist_ok=True)
            if _writable(d):
                return d
    except OSError:
        pass
    d = shared_cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    return d


def own_cache_dir(run) -> Path:
    """`RUN/analysis_cache`, the cache folder of a run whose folder is writable."""
    return Path(run.path) / "analysis_cache"


def shared_cache_dir() -> Path:
    """The cache of runs whose folders are not writable, one for the CLI and the explorer (its
    files' names carry digests of what they hold): a folder in the temporary directory."""
    return Path(tempfile.gettempdir()) / "cryoscape_analysis_cache"


def _writable(path: Path) -> bool:
    """Writable, by its permission bits too: for root os.access says yes to any folder, and a
    run shared read-only (no write bits) must stay untouched."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


def cache_dirs(run) -> list[Path]:
    """Where a run's cached analyses may be: its cache folder and the shared one."""
    return [own_cache_dir(run), shared_cache_dir()]


def cached_file(run, name: str) -> Path | None:
    """File `name` in the run's cache folder or the shared one, where there (the names carry
    a digest of what they hold); creates no folder."""
    return next((d / name for d in cache_dirs(run) if (d / name).is_file()), None)
