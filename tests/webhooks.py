"""A customer's webhook endpoint for tests: it checks every signature Usher sends."""

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from engine.constants import WEBHOOK_REPLAY_WINDOW_S
from tests.harness import free_port


class Receiver(ThreadingHTTPServer):
    """A customer's endpoint: checks every signature, answers 500 to the first `fail` posts."""

    def __init__(self, port: int, fail: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.secret = ""
        self.fail = fail
        self.received: list[dict] = []
        self.refused: list[str] = []


class Handler(BaseHTTPRequestHandler):
    """Verify one delivery's signature and timestamp, then answer as told."""

    server: Receiver

    def do_POST(self) -> None:
        """Check the signature over `{timestamp}.{body}`, then record or refuse it."""
        body = self.rfile.read(int(self.headers["Content-Length"]))
        stamp = self.headers["X-Usher-Timestamp"]
        message = f"{stamp}.".encode() + body
        expected = hmac.new(self.server.secret.encode(), message, hashlib.sha256).hexdigest()
        signature = self.headers["X-Usher-Signature"]
        if not hmac.compare_digest(signature, f"sha256={expected}"):
            self.server.refused.append("bad signature")
            self._answer(401)
            return
        if abs(time.time() - int(stamp)) > WEBHOOK_REPLAY_WINDOW_S:
            self.server.refused.append("outside the replay window")
            self._answer(401)
            return
        delivery = {"id": self.headers["X-Usher-Delivery"], "body": json.loads(body)}
        self.server.received.append(delivery)
        failing = self.server.fail > 0
        self.server.fail -= 1
        self._answer(500 if failing else 204)

    def _answer(self, code: int) -> None:
        """Send a bodiless answer."""
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        """Keep the test's output quiet."""


@contextmanager
def running_receiver(fail: int) -> Iterator[Receiver]:
    """Run a receiver on a free port that answers 500 to its first `fail` deliveries."""
    server = Receiver(free_port(), fail=fail)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
