"""What Usher may touch in an integration's app: its ownership settings as plain data.

Usher removes (revokes, deactivates, deletes) only what it granted itself unless the
integration is authoritative for the app. The service account and the accounts the
integration lists as protected (break-glass admins) are never touched at all.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.apps.profile import user_variables
from engine.storage.models import IntegrationSecret

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

    from engine.apps.template import AppTemplate
    from engine.storage.models import Identity, Integration
    from engine.storage.vault import Vault

SERVICE_ACCOUNT_SECRET = "admin_username"
"""The secret that holds the service account's username, unless the template names another."""


def account_key(name: str) -> str:
    """Return how a protected account's name is compared: trimmed, case-folded."""
    return name.strip().casefold()


@dataclass(frozen=True)
class Ownership:
    """An integration's rules about what its jobs may change in the app."""

    authoritative: bool = False
    """Also revoke and deactivate what Usher only observed in the app."""
    protected: frozenset[str] = frozenset()
    """Case-folded userNames or emails never touched."""
    service_account: str | None = None
    """The app's service account: never touched."""
    delete_users: bool = False
    """A SCIM DELETE runs the template's delete_user (where it declares one)."""

    def protects(self, identity: "Identity", template: "AppTemplate") -> str | None:
        """Return why an identity's account is never touched, or None when it may be."""
        names = {account_key(identity.user_name)}
        email = user_variables(identity.resource, template.extension).get("email")
        if email:
            names.add(account_key(str(email)))
        for item in identity.resource.get("emails") or []:
            if isinstance(item, dict) and item.get("value"):
                names.add(account_key(str(item["value"])))
        if self.service_account and account_key(self.service_account) in names:
            return "protected: the integration's service account is never touched"
        hit = sorted(names & self.protected)
        if hit:
            return f"protected: {hit[0]} is on the integration's protected accounts"
        return None


NOT_AUTHORITATIVE = Ownership()
"""The default: remove only what Usher granted, protect nothing but what is listed."""


def ownership_of(
    integration: "Integration", template: "AppTemplate", secrets: Mapping[str, str]
) -> Ownership:
    """Return an integration's ownership rules; the service account comes from its secret."""
    return Ownership(
        authoritative=integration.authoritative,
        protected=frozenset(account_key(n) for n in integration.protected_accounts),
        service_account=secrets.get(template.service_account_secret or SERVICE_ACCOUNT_SECRET),
        delete_users=integration.delete_users,
    )


def clean_protected(names: Iterable[str]) -> list[str]:
    """Return a protected-accounts list as stored: trimmed, without blanks or duplicates."""
    seen: dict[str, str] = {}
    for name in names:
        if name.strip():
            seen.setdefault(account_key(name), name.strip())
    return sorted(seen.values(), key=account_key)


async def load_ownership(
    session: "AsyncSession", vault: "Vault", integration: "Integration", template: "AppTemplate"
) -> Ownership:
    """Load an integration's ownership rules, decrypting only the service account's name."""
    name = template.service_account_secret or SERVICE_ACCOUNT_SECRET
    row = await session.get(IntegrationSecret, (integration.id, name))
    secrets = {name: vault.decrypt(row.ciphertext)} if row is not None else {}
    return ownership_of(integration, template, secrets)
