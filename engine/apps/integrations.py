"""Integrations and operator tokens: create, configure, describe."""

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from pydantic import BaseModel
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.grants import (
    MappingView,
    granting_nothing,
    list_mappings,
    live_groups,
    mapping_rules,
)
from engine.apps.otp import TotpSecretError, totp_of
from engine.apps.ownership import clean_protected
from engine.apps.template import AppTemplate, catalogue_endpoint_of, load_app
from engine.constants import GUARD_MAX_REMOVALS, TOKEN_PREFIX_API, TOKEN_PREFIX_SCIM
from engine.settings import Settings
from engine.storage.models import (
    ApiToken,
    AppAccount,
    AuditEvent,
    Identity,
    Integration,
    Onboarding,
    Role,
    utcnow,
)
from engine.storage.tokens import hash_token, new_token
from engine.storage.vault import Vault


class IntegrationError(Exception):
    """Bad input for an integration command; the message says what to fix."""


def check_base_url(url: str) -> str:
    """Return a base URL without trailing slash, refusing anything but http(s) with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise IntegrationError(f"base URL must be http(s)://host[:port][/path], got {url!r}")
    return url.rstrip("/")


async def create_integration(
    session: AsyncSession,
    settings: Settings,
    *,
    app: str,
    base_url: str,
    name: str | None = None,
    import_accounts: bool = True,
) -> tuple[Integration, str]:
    """Create an integration and return it with its SCIM token, shown only this once.

    It starts `importing` when its app can list its accounts: its jobs wait until the
    accounts already in the app are imported. `import_accounts=False` is for an app known
    to hold no accounts yet: it plans at once, and its first inventory is a day later.
    """
    template = load_app(settings.flows_dir, app)
    token = new_token(TOKEN_PREFIX_SCIM)
    importing = import_accounts and template.can_inventory
    integration = Integration(
        app=template.name,
        name=name or template.label,
        base_url=check_base_url(base_url),
        scim_token_hash=hash_token(token),
        onboarding=Onboarding.importing if importing else Onboarding.ready,
        next_inventory_at=None
        if importing
        else utcnow() + timedelta(seconds=settings.inventory_every_s),
    )
    session.add(integration)
    session.add(
        AuditEvent(
            actor="cli",
            event="integration.created",
            integration_id=integration.id,
            target=app,
            detail={"onboarding": integration.onboarding},
        )
    )
    await session.commit()
    return integration, token


async def get_integration(session: AsyncSession, integration_id: str) -> Integration:
    """Return an integration or say clearly that there is none."""
    integration = await session.get(Integration, integration_id)
    if integration is None:
        raise IntegrationError(f"no integration {integration_id!r}")
    return integration


async def rotate_token(session: AsyncSession, integration_id: str, *, actor: str = "cli") -> str:
    """Replace an integration's SCIM token; the old one stops working at once."""
    integration = await get_integration(session, integration_id)
    token = new_token(TOKEN_PREFIX_SCIM)
    integration.scim_token_hash = hash_token(token)
    integration.updated_at = utcnow()
    session.add(integration)
    session.add(
        AuditEvent(actor=actor, event="integration.token_rotated", integration_id=integration.id)
    )
    await session.commit()
    return token


async def set_secret(
    session: AsyncSession,
    settings: Settings,
    vault: Vault,
    integration_id: str,
    name: str,
    value: str,
) -> None:
    """Store one declared secret of an integration, encrypted."""
    integration = await get_integration(session, integration_id)
    template = load_app(settings.flows_dir, integration.app)
    declared = template.secret(name)
    if declared is None:
        known = ", ".join(s.name for s in template.secrets) or "none"
        raise IntegrationError(f"app {template.name} declares no secret {name!r} (known: {known})")
    if not value:
        raise IntegrationError(f"secret {name!r} is empty: pass its value on standard input")
    if declared.kind == "totp_seed":
        try:
            totp_of(value)
        except TotpSecretError as error:
            raise IntegrationError(f"secret {name!r}: {error}") from None
    await vault.put(session, integration.id, name, value)
    session.add(
        AuditEvent(actor="cli", event="secret.set", integration_id=integration.id, target=name)
    )
    await session.commit()


async def set_secrets(
    session: AsyncSession,
    settings: Settings,
    vault: Vault,
    integration_id: str,
    values: dict[str, str],
) -> None:
    """Store several declared secrets of an integration at once."""
    for name, value in values.items():
        await set_secret(session, settings, vault, integration_id, name, value)


def scim_base_url(settings: Settings, integration: Integration) -> str:
    """Return the SCIM base URL the IT admin pastes into the IdP."""
    return f"{settings.public_url.rstrip('/')}/scim/v2/{integration.id}"


def lacking_secrets(integration_id: str, missing: list[str]) -> str:
    """Say which secrets an integration still needs, and how to set them."""
    return (
        f"integration {integration_id} lacks secrets {', '.join(missing)}:"
        " set them with `usher integrations set-secret`"
    )


async def missing_secrets(
    session: AsyncSession, vault: Vault, integration: Integration, template: AppTemplate
) -> list[str]:
    """Return the declared secrets the integration does not hold yet."""
    held = await vault.names_of(session, integration.id)
    return [s.name for s in template.secrets if s.name not in held]


async def create_api_token(session: AsyncSession, name: str, role: str = Role.admin) -> str:
    """Create an operator API token with a role and return it, shown only this once."""
    if role not in set(Role):
        raise IntegrationError(f"role must be one of {', '.join(Role)}, not {role!r}")
    token = new_token(TOKEN_PREFIX_API)
    session.add(ApiToken(name=name, token_hash=hash_token(token), role=role))
    session.add(
        AuditEvent(actor="cli", event="api_token.created", target=name, detail={"role": role})
    )
    await session.commit()
    return token


async def list_integrations(session: AsyncSession) -> list[Integration]:
    """Return every integration, oldest first."""
    return list((await session.exec(select(Integration).order_by(Integration.created_at))).all())


class CatalogueEntry(BaseModel):
    """An entitlement as the IT admin assigns it: its string value, and where SCIM lists it."""

    value: str
    label: str
    kind: str
    rank: int
    description: str | None
    scim_endpoint: str


class IdleGroup(BaseModel):
    """A pushed group that matches no entitlement value and no mapping: it grants nothing."""

    id: str
    display_name: str
    external_id: str | None
    members: int


class ObservedAccount(BaseModel):
    """An account Usher found already in the app, and what it showed that Usher did not grant.

    Reported, never silently "fixed": Usher removes only what it granted unless the
    integration is authoritative.
    """

    identity_id: str
    user_name: str
    observed_active: bool | None
    observed_entitlements: list[str]


class IntegrationView(BaseModel):
    """What the IT admin needs: SCIM URL, app, health, secrets, catalogue, groups, mappings."""

    id: str
    name: str
    app: str
    app_label: str
    base_url: str
    scim_base_url: str
    health: str
    health_detail: str | None
    breaker: str
    refused_sign_ins: int
    missing_secrets: list[str]
    entitlements: list[CatalogueEntry]
    mappings: list[MappingView]
    groups_granting_nothing: list[IdleGroup]
    authoritative: bool = False
    delete_users: bool = False
    protected_accounts: list[str] = []
    max_removals_per_hour: int = GUARD_MAX_REMOVALS
    """The mass-change guard: accounts that may lose access within an hour before the rest
    wait for an operator's approval."""
    observed_accounts: list[ObservedAccount] = []
    onboarding: str = Onboarding.ready
    remediate: bool = False
    next_inventory_at: datetime | None = None
    created_at: datetime


async def describe_integration(
    session: AsyncSession, settings: Settings, vault: Vault, integration_id: str
) -> IntegrationView:
    """Describe an integration, never a secret or a token: only what the IT admin copies."""
    integration = await get_integration(session, integration_id)
    template = load_app(settings.flows_dir, integration.app)
    entries = [
        CatalogueEntry(
            **e.model_dump(include={"value", "label", "kind", "rank", "description"}),
            scim_endpoint=f"/{catalogue_endpoint_of(e.kind)}",
        )
        for e in template.entitlements
    ]
    groups = await live_groups(session, integration.id)
    members = {group.id: count for group, count in groups}
    idle = granting_nothing(
        [group for group, _ in groups],
        await mapping_rules(session, integration.id),
        {e.value for e in template.entitlements},
    )
    return IntegrationView(
        id=integration.id,
        name=integration.name,
        app=template.name,
        app_label=template.label,
        base_url=integration.base_url,
        scim_base_url=scim_base_url(settings, integration),
        health=integration.health,
        health_detail=integration.health_detail,
        breaker=integration.breaker,
        refused_sign_ins=integration.refusals,
        missing_secrets=await missing_secrets(session, vault, integration, template),
        entitlements=entries,
        mappings=await list_mappings(session, integration.id),
        groups_granting_nothing=[
            IdleGroup(
                id=g.id,
                display_name=g.display_name,
                external_id=g.external_id,
                members=members[g.id],
            )
            for g in idle
        ],
        authoritative=integration.authoritative,
        delete_users=integration.delete_users,
        protected_accounts=list(integration.protected_accounts),
        max_removals_per_hour=integration.max_removals_per_hour,
        observed_accounts=await observed_accounts(session, integration.id),
        onboarding=integration.onboarding,
        remediate=integration.remediate,
        next_inventory_at=integration.next_inventory_at,
        created_at=integration.created_at,
    )


async def observed_accounts(session: AsyncSession, integration_id: str) -> list[ObservedAccount]:
    """Return the accounts Usher found already in the app, by userName."""
    query = (
        select(AppAccount, Identity.user_name)
        .join(Identity, Identity.id == AppAccount.identity_id)
        .where(AppAccount.integration_id == integration_id, AppAccount.observed_at != None)  # noqa: E711
        .order_by(Identity.user_name)
    )
    return [
        ObservedAccount(
            identity_id=account.identity_id,
            user_name=user_name,
            observed_active=account.observed_active,
            observed_entitlements=sorted(
                set(account.observed_entitlements) - set(account.entitlements)
            ),
        )
        for account, user_name in (await session.exec(query)).all()
    ]


async def set_ownership(
    session: AsyncSession,
    integration_id: str,
    *,
    authoritative: bool | None = None,
    delete_users: bool | None = None,
    protected_accounts: list[str] | None = None,
    remediate: bool | None = None,
    actor: str,
) -> Integration:
    """Change what an integration's jobs may touch; audited; committed.

    It takes effect at each identity's next job; `usher plan` shows what that would do.
    """
    integration = await get_integration(session, integration_id)
    changed: dict[str, object] = {}
    if authoritative is not None:
        integration.authoritative = changed["authoritative"] = authoritative
    if delete_users is not None:
        integration.delete_users = changed["delete_users"] = delete_users
    if remediate is not None:
        integration.remediate = changed["remediate"] = remediate
    if protected_accounts is not None:
        cleaned = clean_protected(protected_accounts)
        integration.protected_accounts = changed["protected_accounts"] = cleaned
    integration.updated_at = utcnow()
    session.add(integration)
    session.add(
        AuditEvent(
            actor=actor,
            event="integration.ownership_changed",
            integration_id=integration.id,
            target=integration.id,
            detail=changed,
        )
    )
    await session.commit()
    await session.refresh(integration)
    return integration


ONBOARDING_SAYS = {
    Onboarding.importing: "importing: plans nothing until the accounts already in the app are"
    " imported (its jobs wait)",
    Onboarding.ready: "ready: plans",
}
"""What each onboarding state means, for a terminal."""


def render_integration(view: IntegrationView) -> str:
    """Lay an integration out for a terminal, the entitlement values ready to copy."""
    missing = ", ".join(view.missing_secrets)
    lines = [
        f"integration  {view.id}",
        f"name         {view.name}",
        f"app          {view.app} ({view.app_label})",
        f"base URL     {view.base_url}",
        f"SCIM URL     {view.scim_base_url}",
        f"health       {view.health}" + (f": {view.health_detail}" if view.health_detail else ""),
        f"sign-in      breaker {view.breaker}, {view.refused_sign_ins} refused since last success",
        f"secrets      {f'missing: {missing}' if missing else 'all set'}",
        "entitlements (assign these string values to IdP groups)",
    ]
    value_width = max((len(e.value) for e in view.entitlements), default=0)
    label_width = max((len(e.label) for e in view.entitlements), default=0)
    for entry in view.entitlements:
        kind = entry.kind if entry.kind == "multi" else f"{entry.kind}, rank {entry.rank}"
        lines.append(
            f"  {entry.value:<{value_width}}  {entry.label:<{label_width}}"
            f"  {kind:<18}  {entry.scim_endpoint}"
        )
    if not view.entitlements:
        lines.append("  none")
    lines.append("group mappings (usher integrations map-group ID GROUP VALUE)")
    for mapping in view.mappings:
        named = f" ({mapping.group_kind} {mapping.group})"
        if mapping.group == mapping.group_label:
            named = ""
        lines.append(f"  {mapping.group_label}{named} -> {mapping.value}")
    if not view.mappings:
        lines.append("  none")
    authority = (
        "authoritative: also removes what it only observed"
        if view.authoritative
        else ("not authoritative: removes only what Usher granted")
    )
    lines.append(f"ownership    {authority}")
    lines.append(f"on DELETE    {'delete_user' if view.delete_users else 'deactivate and revoke'}")
    protected = ", ".join(view.protected_accounts) or "none"
    lines.append(f"protected    service account, {protected}")
    lines.append(
        f"guard        at most {view.max_removals_per_hour} accounts lose access within an hour;"
        " more wait for `usher approve`"
    )
    lines.append(f"onboarding   {ONBOARDING_SAYS[view.onboarding]}")
    drift = (
        "remedied: differing identities reconciled, orphans deactivated"
        if view.remediate and view.authoritative
        else "reported only (remedied when authoritative and set-remediate on)"
    )
    lines.append(f"drift        {drift}")
    if view.observed_accounts:
        lines.append("found in the app before Usher (reported, not changed)")
        for found in view.observed_accounts:
            status = {True: "active", False: "deactivated", None: "status not seen"}
            held = ", ".join(found.observed_entitlements) or "nothing Usher did not grant"
            lines.append(f"  {found.user_name}: {status[found.observed_active]}; holds {held}")
    if view.groups_granting_nothing:
        lines.append("groups that grant nothing (name them after a value, or map them)")
        for group in view.groups_granting_nothing:
            external = f", externalId {group.external_id}" if group.external_id else ""
            plural = "" if group.members == 1 else "s"
            lines.append(f"  {group.display_name} ({group.members} member{plural}{external})")
    return "\n".join(lines)
