"""The bench's baseline for SCIM: scim2-server's own in-memory ASGI app, served as Usher's API.

`usher bench` runs it as `python -m cli.bench_scim2 PORT TOKEN`: the same uvicorn
configuration as `usher serve` (cli/serving.py), one process, a bearer token checked on
each request, the library's default provider (Users, Groups, the enterprise extension).
"""

import hmac
import sys

from scim2_models import UnauthorizedException
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage
from scim2_server.requests import ScimRequest
from scim2_server.service import ScimService
from scim2_server.utils import load_default_provider

from cli.serving import uvicorn_server

HOST = "127.0.0.1"
CURSOR_SECRET = "bench-only-cursor-secret"
"""Signs paging cursors in this throw-away server; the bench pages nothing."""


class TokenApplication(ASGIApplication):
    """scim2-server's ASGI app, refusing a request without the one bearer token."""

    def __init__(self, token: str) -> None:
        provider = load_default_provider()
        super().__init__(
            AsyncInMemoryStorage(), provider, ScimService(provider, secret=CURSOR_SECRET)
        )
        self.token = token

    def check_auth(self, request: ScimRequest) -> None:
        """Refuse a request whose bearer token is not the one given."""
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), self.token):
            raise UnauthorizedException


def main() -> None:
    """Serve the baseline on the port and with the token named on the command line."""
    port, token = int(sys.argv[1]), sys.argv[2]
    uvicorn_server(TokenApplication(token), HOST, port).run()


if __name__ == "__main__":
    main()
