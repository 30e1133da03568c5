"""Usher's version, read from the installed package's metadata."""

from importlib.metadata import PackageNotFoundError, version

from engine.constants import DISTRIBUTION, UNKNOWN_VERSION


def usher_version() -> str:
    """Return the installed version, so the CLI and the API report what really runs."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNKNOWN_VERSION
