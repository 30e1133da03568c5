"""`totp`: type the current code of a named secret's seed, masked like a secret."""

import pyotp

from engine.automation.browser import BrowserPool
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

PAGES = {"/mfa": html("<label for=c>Authentication code</label><input id=c>")}
SEED = pyotp.random_base32()


async def test_totp_types_a_current_code_of_the_named_seed(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The field holds a code the seed's authenticator accepts now; the field is masked."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/mfa"), {"totp": {"label": "Authentication code"}, "secret": "mfa_seed"}],
        secrets={"mfa_seed": SEED},
        read_page=evaluated("c.value"),
    )
    assert ran.failure is None
    code = ran.extra["page"]
    assert len(code) == 6 and pyotp.TOTP(SEED).verify(code, valid_window=1)
    assert len(ran.runner.secret_targets) == 1


async def test_totp_without_its_secret_fails(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """No seed stored under the name: a failure that says which secret is missing."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/mfa"), {"totp": {"label": "Authentication code"}}],
        read_page=evaluated("c.value"),
    )
    assert ran.failure is not None
    assert "the integration has no secret 'totp_seed' for the TOTP step" in str(ran.failure)
    assert ran.extra["page"] == ""
