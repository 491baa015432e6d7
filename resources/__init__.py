"""Icons, style sheet and default settings shipped with cryoscape."""
from pathlib import Path

HERE = Path(__file__).resolve().parent


def resource(name: str) -> Path:
    """Path of a file shipped in resources/."""
    return HERE / name
