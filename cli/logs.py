"""Logging set-up: one line per event, never a secret (the runner redacts before logging)."""

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str = "INFO") -> None:
    """Configure the root logger once for a command."""
    logging.basicConfig(level=level, format=FORMAT)
    for noisy in ("httpx", "httpcore", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
