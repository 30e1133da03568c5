"""App templates: `flows/<app>/app.yaml` says what an app needs and what its flows do."""

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.apps.profile import USER_VARIABLES

BUILTIN_FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"
"""The apps Usher ships: `flows/` beside the packages, in a checkout and in the wheel alike."""

ACTIONS = (
    "login",
    "create_user",
    "update_user",
    "grant_entitlement",
    "revoke_entitlement",
    "set_role",
    "deactivate_user",
    "reactivate_user",
    "list_users",
    "delete_user",
)


class AppError(Exception):
    """An app template is unknown or broken; the message says which and why."""


class SecretSpec(BaseModel):
    """A secret an integration of this app must hold; only its name lives in the template."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Literal["password", "totp_seed", "text"] = "password"
    label: str | None = None


class Entitlement(BaseModel):
    """An entitlement of the app's catalogue; the IT admin assigns `value` to IdP groups."""

    model_config = ConfigDict(extra="forbid")
    value: str = Field(min_length=1)
    label: str
    kind: Literal["multi", "exclusive"] = "multi"
    rank: int = 0
    description: str | None = None


class ExtensionAttribute(BaseModel):
    """One attribute of the app's own SCIM extension, readable by flows as `user.<name>`."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    type: Literal["string", "boolean", "integer", "decimal"] = "string"
    description: str = ""


class AppExtension(BaseModel):
    """The app's SCIM User extension, published in /Schemas for the IdP to map onto."""

    model_config = ConfigDict(extra="forbid")
    urn: str = Field(pattern=r"^urn:[A-Za-z0-9][A-Za-z0-9:._-]*:User$")
    name: str
    description: str = ""
    attributes: list[ExtensionAttribute] = Field(min_length=1)


class Limits(BaseModel):
    """Default concurrency and pace for one app instance."""

    model_config = ConfigDict(extra="forbid")
    concurrency: int = Field(default=2, ge=1, le=50)
    actions_per_minute: int = Field(default=60, ge=1)


UNMATCHABLE = frozenset({"active", "entitlements", "roles"})
"""User variables that name no one: an inventory never matches on them."""


class MatchRule(BaseModel):
    """How an account the app lists is matched to an identity: a `user.*` variable against
    a column of `list_users`' rows."""

    model_config = ConfigDict(extra="forbid")
    attribute: str = Field(description="The user.* variable compared, e.g. email.")
    column: str = Field(min_length=1, description="The list_users column compared with it.")
    case_insensitive: bool = True


class Inventory(BaseModel):
    """What `list_users` reads: which rows, and which columns say what about an account."""

    model_config = ConfigDict(extra="forbid")
    rows: str = Field(min_length=1, description="The extract_rows `into` holding the accounts.")
    key: str = Field(min_length=1, description="The column with the app's own id of an account.")
    match: MatchRule
    status: str | None = Field(
        default=None, description="A column saying Active, Deactivated, ... (words as for create)."
    )
    entitlements: list[str] = Field(
        default_factory=list,
        description="Columns listing entitlement labels or values, comma-separated.",
    )


class AppTemplate(BaseModel):
    """The template of an app, shared by every integration of it."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    label: str
    description: str | None = None
    secrets: list[SecretSpec] = Field(default_factory=list)
    attributes: list[str] = Field(default_factory=list)
    entitlements: list[Entitlement] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    actions: list[str] = Field(min_length=1)
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Hosts other than the base URL's a flow may visit."
    )
    extension: AppExtension | None = None
    service_account_secret: str | None = Field(
        default=None,
        description="The secret holding the service account's username (admin_username "
        "when unset); that account is never provisioned into.",
    )
    create_sets: list[str] = Field(
        default_factory=list,
        description="Attributes create_user itself fills in: a new account whose other "
        "attributes are empty needs no update_user after its create.",
    )
    inventory: Inventory | None = Field(
        default=None,
        description="How list_users' rows are read and matched to identities: drift reports "
        "and the onboarding import need it.",
    )
    folder: Path = Field(default=Path(), exclude=True)

    @model_validator(mode="after")
    def _known_attributes(self) -> "AppTemplate":
        """Refuse an attribute no SCIM mapping fills, and extension names that shadow core ones."""
        own = [a.name for a in self.extension.attributes] if self.extension else []
        clashes = sorted({n for n in own if n.casefold() in {v.casefold() for v in USER_VARIABLES}})
        if clashes:
            raise ValueError(f"extension attributes {clashes} shadow built-in user variables")
        unknown = sorted(set(self.attributes) - set(self.user_variables))
        if unknown:
            raise ValueError(f"unknown user attributes {unknown}; known: {self.user_variables}")
        unset = sorted(set(self.create_sets) - set(self.attributes))
        if unset:
            raise ValueError(f"create_sets names {unset}, not among attributes {self.attributes}")
        return self

    @model_validator(mode="after")
    def _inventory_matchable(self) -> "AppTemplate":
        """Refuse an inventory matched on a variable that names no one or that Usher lacks."""
        if self.inventory is None:
            return self
        attribute = self.inventory.match.attribute
        if attribute not in self.user_variables or attribute in UNMATCHABLE:
            raise ValueError(
                f"inventory.match.attribute {attribute!r} names no one;"
                f" known: {[v for v in self.user_variables if v not in UNMATCHABLE]}"
            )
        return self

    @property
    def can_inventory(self) -> bool:
        """Tell whether Usher can read this app's accounts: list_users and how to read it.

        Without list_users `usher flows check` notes what drift lacks; the template stands.
        """
        return self.inventory is not None and "list_users" in self.actions

    @property
    def user_variables(self) -> list[str]:
        """Return every `user.*` variable of this app: the built-in ones and its extension's."""
        own = [a.name for a in self.extension.attributes] if self.extension else []
        return [*USER_VARIABLES, *own]

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, value: list[str]) -> list[str]:
        """Refuse an action Usher would never call."""
        unknown = sorted(set(value) - set(ACTIONS))
        if unknown:
            raise ValueError(f"unknown actions {unknown}; known: {list(ACTIONS)}")
        return value

    @property
    def used_attributes(self) -> frozenset[str]:
        """Return the `user.*` variables whose change needs a job, entitlements included."""
        carried = {"entitlements", "roles"} if self.entitlements else set()
        return frozenset(self.attributes) | carried

    def flow_path(self, action: str) -> Path:
        """Return the YAML file of one action's flow."""
        return self.folder / f"{action}.yaml"

    def secret(self, name: str) -> SecretSpec | None:
        """Return a declared secret by name."""
        return next((s for s in self.secrets if s.name == name), None)


def app_dirs(flows_dir: Path | None) -> list[Path]:
    """Return where apps are looked up: a deployment's own folder first, then the built-in one."""
    dirs = [flows_dir] if flows_dir is not None else []
    if not any(d.resolve() == BUILTIN_FLOWS_DIR for d in dirs):
        dirs.append(BUILTIN_FLOWS_DIR)
    return dirs


def available_apps(flows_dir: Path | None) -> list[str]:
    """Return the apps that have a template, the deployment's own and the built-in ones."""
    return sorted({p.parent.name for d in app_dirs(flows_dir) for p in d.glob("*/app.yaml")})


@cache
def _load(path: Path, mtime: float) -> AppTemplate:
    """Parse one app.yaml; cached by modification time so edits are seen."""
    try:
        data = yaml.safe_load(path.read_text())
        template = AppTemplate.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise AppError(f"{path}: {error}") from error
    if template.name != path.parent.name:
        raise AppError(f"{path}: name {template.name!r} differs from its folder")
    return template.model_copy(update={"folder": path.parent})


def app_path(flows_dir: Path | None, name: str) -> Path:
    """Return the app.yaml an app name resolves to; the deployment's own folder wins."""
    candidates = [d / name / "app.yaml" for d in app_dirs(flows_dir)]
    return next((path for path in candidates if path.is_file()), candidates[0])


def load_app(flows_dir: Path | None, name: str) -> AppTemplate:
    """Return the template of an app, or raise AppError naming the apps there are."""
    path = app_path(flows_dir, name)
    if not path.is_file():
        known = ", ".join(available_apps(flows_dir)) or "none"
        where = ", ".join(str(d) for d in app_dirs(flows_dir))
        raise AppError(f"unknown app {name!r} (apps in {where}: {known})")
    return _load(path, path.stat().st_mtime)


def catalogue_endpoint_of(kind: str) -> str:
    """Return the SCIM endpoint an app entitlement of a kind is listed at."""
    return "Roles" if kind == "exclusive" else "Entitlements"
