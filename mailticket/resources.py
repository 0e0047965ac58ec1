"""Locates the migrations/ and templates/ folders, in a wheel or in a source checkout."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """The folder `name` shipped inside the wheel, else the one at the repository's top."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"mailticket resource folder {name!r} is missing")
