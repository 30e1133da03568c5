"""Roles: a viewer token or session reads and is refused every change; tokens show their role."""

import httpx
import pytest

from engine.constants import CSRF_HEADER
from tests.harness import Usher
from tests.operators import Account, usher_cli

CHANGES = [
    ("post", "/api/jobs/no-such-job/retry", None),
    ("post", "/api/jobs/no-such-job/cancel", None),
    ("post", "/api/integrations/no-such-integration/resume", None),
    ("post", "/api/integrations/no-such-integration/mappings", {"group": "g", "value": "v"}),
    ("delete", "/api/integrations/no-such-integration/mappings?group=g", None),
    ("put", "/api/integrations/no-such-integration/ownership", {"authoritative": True}),
    (
        "post",
        "/api/assignments",
        {"integration_id": "no-such-integration", "user_name": "u", "value": "v", "reason": "r"},
    ),
    ("delete", "/api/assignments/no-such-assignment", None),
]
"""Every route that changes something; a refusal comes before the 404 of the unknown id."""


def token(usher: Usher, role: str | None) -> str:
    """Create an operator API token with the real CLI; no role means the default."""
    extra = ["--role", role] if role else []
    result = usher_cli(usher, "tokens", "create", "--name", f"roles-{role}", *extra)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def call(client: httpx.Client, verb: str, path: str, body: dict | None, **headers: str) -> int:
    """Send one change and return its status."""
    return client.request(verb.upper(), path, json=body, headers=headers).status_code


@pytest.mark.parametrize(("verb", "path", "body"), CHANGES)
def test_a_viewer_token_reads_and_is_refused_every_change(
    usher: Usher, verb: str, path: str, body: dict | None
) -> None:
    """403 for the viewer's change; the admin gets past the role check (404: no such id)."""
    viewer, admin = token(usher, "viewer"), token(usher, None)
    with httpx.Client(base_url=usher.api) as client:
        assert call(client, verb, path, body, Authorization=f"Bearer {viewer}") == 403
        assert call(client, verb, path, body, Authorization=f"Bearer {admin}") in (404, 400)
        read = client.get("/api/jobs/no-such-job", headers={"Authorization": f"Bearer {viewer}"})
    assert read.status_code == 404


def test_tokens_list_shows_each_role_never_the_token(usher: Usher) -> None:
    """`usher tokens list`: name, role, created, last used; admin is the default role."""
    viewer, admin = token(usher, "viewer"), token(usher, None)
    listed = usher_cli(usher, "tokens", "list").output
    assert viewer not in listed and admin not in listed
    roles = {line.split()[0]: line.split()[1] for line in listed.splitlines()[1:]}
    assert roles["roles-viewer"] == "viewer" and roles["roles-None"] == "admin"
    refused = usher_cli(usher, "tokens", "create", "--role", "owner")
    assert refused.exit_code == 2


def test_a_session_changes_only_as_an_admin_with_its_csrf_header(
    usher: Usher, admin: Account, viewer: Account, signed_in_client
) -> None:
    """A session cookie alone never changes anything: it needs the admin role and the header."""
    as_viewer, viewer_csrf = signed_in_client(viewer)
    assert call(as_viewer, "post", "/api/jobs/x/retry", None, **{CSRF_HEADER: viewer_csrf}) == 403
    as_admin, admin_csrf = signed_in_client(admin)
    assert call(as_admin, "post", "/api/jobs/x/retry", None) == 403
    assert call(as_admin, "post", "/api/jobs/x/retry", None, **{CSRF_HEADER: "forged"}) == 403
    assert call(as_admin, "post", "/api/jobs/x/retry", None, **{CSRF_HEADER: admin_csrf}) == 404
