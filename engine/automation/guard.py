"""Keep a flow on its integration's origin: block foreign navigation, type secrets only there.

A secret typed on a page an attacker's redirect reached is a leaked secret; so the guard
blocks top-level navigation to hosts the app's template does not allow, notes a redirect it
could not stop (Playwright does not route redirects), and refuses a secret off the origin.
"""

import re
from urllib.parse import urlsplit

from playwright.async_api import Page, Request, Route

from engine.automation.errors import FlowFailed


def origin_of(url: str) -> str:
    """Return scheme://host[:port] of a URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def off_origin(origin: str) -> re.Pattern[str]:
    """Return a pattern matching every URL that is not on an origin (scheme://host[:port])."""
    return re.compile(rf"^(?!{re.escape(origin)}(?:[/?#]|$))", re.IGNORECASE)


class NavigationGuard:
    """Watch one page's top-level navigation against an origin and allowed hosts."""

    def __init__(self, page: Page, base_url: str, allowed_hosts: list[str]) -> None:
        self.page = page
        self.origin = origin_of(base_url)
        self.allowed_hosts = allowed_hosts
        self.escaped: str | None = None
        page.on("request", self._watch)

    async def install(self) -> None:
        """Block top-level navigation to hosts the app's template does not allow.

        Only requests off the origin are routed: the pattern is matched in the browser's
        driver, so the app's own pages and assets never wait on a round trip to Usher.
        """
        await self.page.context.route(off_origin(self.origin), self._route)

    def allowed(self, url: str) -> bool:
        """Tell whether a URL is on the integration's origin or an allowed host."""
        parts = urlsplit(url)
        if parts.scheme in ("about", "data", "blob"):
            return True
        return origin_of(url) == self.origin or parts.hostname in self.allowed_hosts

    def check_escape(self) -> None:
        """Fail the step if the page left the origin for a host not allowed."""
        if self.escaped is not None:
            raise FlowFailed(f"the app sent the browser to {self.escaped}, off its origin")

    def check_secret_origin(self) -> None:
        """Refuse to type a secret anywhere but on the integration's own origin."""
        here = origin_of(self.page.url)
        if here != self.origin:
            raise FlowFailed(
                f"refused to type a secret on {here}: the integration's origin is {self.origin}"
            )

    def _watch(self, request: Request) -> None:
        """Note a top-level navigation off the origin, such as a redirect the route cannot stop."""
        main = request.frame == self.page.main_frame
        if main and request.is_navigation_request() and not self.allowed(request.url):
            self.escaped = self.escaped or request.url

    async def _route(self, route: Route, request: Request) -> None:
        """Abort a document request to a foreign host; let everything else through."""
        if request.is_navigation_request() and not self.allowed(request.url):
            await route.abort("blockedbyclient")
            return
        await route.continue_()
