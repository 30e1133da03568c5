"""How Usher's API is served by uvicorn: one place, so that the bench serves its baseline alike."""

import uvicorn
from uvicorn._types import ASGIApplication


def uvicorn_server(app: ASGIApplication, host: str, port: int) -> uvicorn.Server:
    """Return a uvicorn server for an ASGI app, configured as `usher serve` runs the API."""
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False)
    return uvicorn.Server(config)
