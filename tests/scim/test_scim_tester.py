"""scim2-tester against the running Usher: every check on Users and Groups passes."""

from collections import Counter

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from tests.scim.conftest import Scim

PASSED = {Status.SUCCESS, Status.SKIPPED}


def test_scim2_tester_finds_nothing_to_report(scim: Scim) -> None:
    """Discovery, CRUD, attribute selection and PATCH add/remove/replace: SUCCESS or SKIPPED."""
    headers = {"Authorization": f"Bearer {scim.token}"}
    with Client(base_url=scim.url, headers=headers, timeout=30) as http:
        client = SyncSCIMClient(http)
        client.discover()
        results = check_server(client, resource_types=["User", "Group"])

    failures = [
        f"{r.status.name} {r.resource_type or ''} {r.title}: {r.reason}"
        for r in results
        if r.status not in PASSED
    ]
    assert failures == [], "\n".join(failures)
    statuses = Counter(r.status for r in results)
    assert statuses[Status.SUCCESS] > 100, statuses
