"""Evidence files: only an operator reads them, and never a file outside the evidence store."""

import httpx
from sqlmodel import select

from engine.constants import SESSION_COOKIE
from engine.storage.db import Database
from engine.storage.models import Evidence
from fixtures.idp import okta_user
from tests.e2e.support import scim_post, wait_job
from tests.harness import Connected, Usher
from tests.operators import Account


async def test_evidence_needs_an_operator_and_stays_inside_the_store(
    usher: Usher,
    usher_db: Database,
    connected: Connected,
    viewer: Account,
    signed_in_client,
) -> None:
    """A real screenshot: 401 anonymous, 200 for a viewer's session; a climbing key is 404."""
    response = await scim_post(connected, okta_user("eve.evidence@example.com", "Eve", "Evidence"))
    job = await wait_job(usher_db, response.json()["id"])
    async with usher_db.session() as session:
        query = select(Evidence).where(Evidence.job_id == job.id, Evidence.kind == "screenshot")
        shot = (await session.exec(query)).first()
        assert shot is not None
        outside = Evidence(
            job_id=job.id,
            kind="screenshot",
            key="../../../../../../etc/hostname",
            content_type="text/plain",
            sha256="0" * 64,
            size=1,
        )
        session.add(outside)
        await session.commit()

    async with httpx.AsyncClient(base_url=usher.api) as anonymous:
        assert (await anonymous.get(f"/api/evidence/{shot.id}")).status_code == 401
        forged = await anonymous.get(f"/api/evidence/{shot.id}", cookies={SESSION_COOKIE: "x.y.z"})
        assert forged.status_code == 401
        token = {"Authorization": f"Bearer {connected.operator}"}
        by_token = await anonymous.get(f"/api/evidence/{outside.id}", headers=token)
        assert by_token.status_code == 404
    client, _csrf = signed_in_client(viewer)
    seen = client.get(f"/api/evidence/{shot.id}")
    assert seen.status_code == 200 and seen.content.startswith(b"\x89PNG")
    assert seen.headers["X-Content-SHA256"] == shot.sha256
    climbing = client.get(f"/api/evidence/{outside.id}")
    assert climbing.status_code == 404 and "outside the evidence store" in climbing.text
