"""cryoscape's science: formats, conventions, models and training. Never imports Qt."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cryoscape")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
