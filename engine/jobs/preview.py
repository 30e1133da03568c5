"""What the jobs would do now: each identity's plan and what grants each action, run nowhere.

The preview loads the same data a job loads (the identity, the account Usher last knew or
the orphan its job would adopt, its live groups and the integration's mappings) and calls
the same planner; it writes nothing, opens no browser and queues no job. Each action that
takes access away is marked, and so is each one the mass-change guard holds for an
operator's approval.
"""

from collections.abc import Collection

from pydantic import BaseModel
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.grants import load_groups, name_key
from engine.apps.integrations import IntegrationError, get_integration
from engine.apps.ownership import load_ownership
from engine.apps.template import load_app
from engine.jobs.drift import adopt, identity_match_key
from engine.jobs.guard import GuardView, guard_view
from engine.planner import PlannedAction, plan, removes_access
from engine.settings import Settings
from engine.storage.models import AppAccount, AppOrphan, Identity, Onboarding, utcnow
from engine.storage.vault import Vault

NO_SOURCE = "no source grants it any more"
"""What a revoke shows in place of sources."""


class ActionPreview(BaseModel):
    """One action a job would run, with what grants its entitlement value."""

    name: str
    target: str | None
    sources: list[str]
    removal: bool = False
    """It takes access away: the mass-change guard counts its account."""
    held: bool = False
    """The guard holds it: it waits for an operator's approval (`usher approve`)."""

    @property
    def label(self) -> str:
        """Return the action as operators read it: its name and value."""
        return f"{self.name} {self.target}" if self.target else self.name


class IdentityPlan(BaseModel):
    """The actions one identity's job would run now."""

    identity_id: str
    user_name: str
    deleted: bool
    actions: list[ActionPreview]
    unsupported: list[str]
    notes: list[str] = []
    """What the plan leaves alone and why: found in the app, not granted by Usher; protected."""
    protected: str | None = None


class IntegrationPlan(BaseModel):
    """The plans of an integration's identities (or of one)."""

    integration_id: str
    app: str
    identities: list[IdentityPlan]
    guard: GuardView | None = None
    """The mass-change guard: its limit, the accounts of the hour and what it holds."""
    onboarding: str = Onboarding.ready
    """importing: no job plans until the accounts already in the app are imported."""


def _action(planned: PlannedAction, removal: bool, held: bool) -> ActionPreview:
    """Return the preview of a planned action; held when it is a removal the guard holds."""
    return ActionPreview(
        name=planned.name,
        target=planned.target,
        sources=list(planned.sources),
        removal=removal,
        held=removal and held,
    )


async def plan_integration(
    session: AsyncSession,
    settings: Settings,
    integration_id: str,
    user: str | None = None,
    vault: Vault | None = None,
    identities: Collection[str] | None = None,
) -> IntegrationPlan:
    """Return what each identity's job would do now, by userName; a deleted identity's plan
    only when there is something left to do. `user` is a userName (any case) or an id;
    `identities`, ids, narrow it to those (a group job's members).
    """
    integration = await get_integration(session, integration_id)
    template = load_app(settings.flows_dir, integration.app)
    vault = vault or Vault.from_path(settings.vault_key_path)
    ownership = await load_ownership(session, vault, integration, template)
    query = select(Identity).where(Identity.integration_id == integration.id)
    if identities is not None:
        query = query.where(col(Identity.id).in_(list(identities)))
    if user is not None:
        query = query.where(
            (col(Identity.id) == user) | (col(Identity.user_name_key) == name_key(user))
        )
    found = (await session.exec(query.order_by(col(Identity.user_name)))).all()
    if user is not None and not found:
        raise IntegrationError(f"integration {integration.id} has no user {user!r}")
    one = found[0].id if user is not None else None
    groups = await load_groups(session, integration.id, one)
    accounts_query = select(AppAccount).where(AppAccount.integration_id == integration.id)
    if one is not None:
        accounts_query = accounts_query.where(AppAccount.identity_id == one)
    accounts = {a.identity_id: a for a in (await session.exec(accounts_query)).all()}
    guard = await guard_view(session, integration.id)
    held = {item.identity_id for item in guard.held}
    orphans = await _orphans(session, integration.id)
    plans: list[IdentityPlan] = []
    for identity in found:
        account = accounts.get(identity.id) or AppAccount(
            integration_id=integration.id, identity_id=identity.id
        )
        orphan = orphans.get(identity_match_key(identity, template) or "")
        if not account.exists and orphan is not None:
            account = AppAccount(integration_id=integration.id, identity_id=identity.id)
            adopt(account, orphan.app_key, orphan.active, orphan.entitlements, utcnow())
        planned = plan(identity, account, template, groups.of(identity.id), ownership)
        deleted = identity.deleted_at is not None
        if deleted and not planned.actions and not planned.notes and user is None:
            continue
        plans.append(
            IdentityPlan(
                identity_id=identity.id,
                user_name=identity.user_name,
                deleted=deleted,
                actions=[
                    _action(a, removes_access(a, account, template), identity.id in held)
                    for a in planned.actions
                ],
                unsupported=planned.unsupported,
                notes=planned.notes,
                protected=planned.protected,
            )
        )
    return IntegrationPlan(
        integration_id=integration.id,
        app=template.name,
        identities=plans,
        guard=guard,
        onboarding=integration.onboarding,
    )


async def _orphans(session: AsyncSession, integration_id: str) -> dict[str, AppOrphan]:
    """Return the accounts no identity owned at the last inventory, by matching value: the
    job of an identity that matches one adopts it, and so does its preview."""
    rows = await session.exec(select(AppOrphan).where(AppOrphan.integration_id == integration_id))
    return {o.match_key: o for o in rows.all() if o.match_key}


def _guard_lines(preview: IntegrationPlan) -> list[str]:
    """Return the guard's line of a plan: the limit, the hour so far, how many are held."""
    guard = preview.guard
    if guard is None:
        return []
    line = (
        f"mass-change guard  {guard.accounts_last_hour} of at most"
        f" {guard.max_removals_per_hour} accounts losing access this hour"
    )
    if guard.held:
        line += (
            f"; {len(guard.held)} held for approval"
            f" (usher approve --integration {preview.integration_id})"
        )
    return [line]


def render_plan(preview: IntegrationPlan) -> str:
    """Lay a plan out for a terminal: per user, each action and what grants it."""
    lines = [f"integration  {preview.integration_id} ({preview.app}): nothing is run"]
    if preview.onboarding == Onboarding.importing:
        lines.append(
            "importing    no job plans until the accounts already in the app are imported;"
            " these plans do not know them yet"
        )
    lines += _guard_lines(preview)
    for identity in preview.identities:
        lines.append(identity.user_name + (" (deleted)" if identity.deleted else ""))
        width = max((len(_head(a)) for a in identity.actions), default=0)
        for action in identity.actions:
            why = ", ".join(action.sources)
            if action.name == "revoke_entitlement":
                why = NO_SOURCE
            line = f"  {_head(action):<{width}}  <- {why}" if why else f"  {_head(action)}"
            lines.append(line + ("  [held for approval]" if action.held else ""))
        if identity.unsupported:
            lines.append(f"  the app cannot: {', '.join(identity.unsupported)}")
        lines += [f"  note: {note}" for note in identity.notes]
        if not identity.actions and not identity.unsupported and not identity.protected:
            lines.append("  nothing to do")
    if not preview.identities:
        lines.append("no users")
    return "\n".join(lines)


def _head(action: ActionPreview) -> str:
    """Return an action's name and target."""
    return action.label
