"""`usher flows check`: find what would break a flow before it runs against an app."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from engine.apps.profile import USER_VARIABLES
from engine.apps.template import AppError, AppTemplate, app_path, load_app
from engine.automation.language import (
    FRAGMENTS_DIR,
    Flow,
    FlowError,
    Fragment,
    Step,
    load_flow,
    load_fragment,
    uses_secret,
)

ENTITLEMENT_ACTIONS = ("grant_entitlement", "revoke_entitlement", "set_role")
NAMESPACES = {
    "user": set(USER_VARIABLES),
    "account": {"key"},
    "integration": {"id", "base_url"},
    "entitlement": {"value", "label", "kind", "rank", "description"},
}
_env = SandboxedEnvironment()


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a flow: where, and what; a `note` informs and fails nothing."""

    file: Path
    where: str
    message: str
    severity: Literal["error", "note"] = "error"

    def __str__(self) -> str:
        label = "note: " if self.severity == "note" else ""
        return f"{self.file}: {self.where}: {label}{self.message}"


@dataclass(frozen=True)
class Capability:
    """What Usher does for an app when its template declares the actions that do it."""

    name: str
    actions: tuple[str, ...]
    meaning: str
    severity: Literal["error", "note"] = "error"


def capabilities(app: AppTemplate) -> list[Capability]:
    """Return the capabilities an app's template must have, each with what its lack means."""
    needed = [
        Capability("sign-in", ("login",), "Usher cannot sign in to the app, so no job can run"),
        Capability(
            "provisioning",
            ("create_user",),
            "Usher cannot create accounts: every user the IdP assigns stays without one",
        ),
        Capability(
            "deprovisioning",
            ("deactivate_user",),
            "a user the IdP deactivates or deletes keeps access to the app",
        ),
        Capability(
            "reactivation",
            ("reactivate_user",),
            "a user the IdP reactivates stays deactivated in the app",
            "note",
        ),
        Capability(
            "drift",
            ("list_users",),
            "Usher cannot read the app's accounts to find what changed behind its back",
            "note",
        ),
    ]
    if app.attributes:
        needed.append(
            Capability(
                "profile updates",
                ("update_user",),
                f"changes to {', '.join(app.attributes)} in the IdP never reach the app",
                "note",
            )
        )
    kinds = {e.kind for e in app.entitlements}
    if "multi" in kinds:
        needed.append(
            Capability(
                "entitlements",
                ("grant_entitlement", "revoke_entitlement"),
                "the multi entitlements the template declares can be neither granted nor"
                " taken away: a value the IdP grants or withdraws never reaches the app",
            )
        )
    if "exclusive" in kinds:
        needed.append(
            Capability(
                "exclusive entitlements",
                ("set_role",),
                "the exclusive entitlements (roles, plans) the template declares are never set",
            )
        )
    return needed


def check_capabilities(app: AppTemplate, path: Path) -> list[Problem]:
    """Return what each capability lacks in the template's actions, and what that means."""
    problems = []
    for capability in capabilities(app):
        lacking = [a for a in capability.actions if a not in app.actions]
        if lacking:
            message = (
                f"{capability.name} needs {' and '.join(capability.actions)}; the template"
                f" lacks {', '.join(lacking)}: {capability.meaning}"
            )
            problems.append(Problem(path, "actions", message, capability.severity))
    return problems


def _walk(steps: list[Step], prefix: str = "steps") -> Iterator[tuple[str, Step]]:
    """Yield every step with its path, branches included, in document order."""
    for index, step in enumerate(steps):
        where = f"{prefix}[{index}]"
        yield where, step
        for name, children in step.children():
            yield from _walk(children, f"{where}.{name}")


def _references(template: str) -> tuple[set[str], set[tuple[str, str]]]:
    """Return the top-level names and the name.attribute pairs a template reads."""
    tree = _env.parse(template)
    pairs = {
        (node.node.name, node.attr)
        for node in tree.find_all(nodes.Getattr)
        if isinstance(node.node, nodes.Name)
    }
    return meta.find_undeclared_variables(tree), pairs


@dataclass
class Scope:
    """What the steps being checked may read: a flow's action, or a fragment's parameters."""

    app: AppTemplate
    action: str | None
    params: set[str] | None = None
    extracted: set[str] = field(default_factory=set)
    rows: set[str] = field(default_factory=set)

    def namespaces(self) -> dict[str, set[str]]:
        """Return each variable namespace a template may read here, with its names."""
        common = {
            "integration": NAMESPACES["integration"],
            "secrets": {s.name for s in self.app.secrets},
            "vars": self.extracted,
        }
        if self.params is not None:
            return {**common, "params": self.params}
        allowed = {**NAMESPACES, **common, "user": set(self.app.user_variables)}
        if self.action not in ENTITLEMENT_ACTIONS:
            allowed.pop("entitlement")
        return allowed


def _check_template(template: str, scope: Scope) -> list[str]:
    """Return what is wrong with one templated string."""
    try:
        names, pairs = _references(template)
    except TemplateSyntaxError as error:
        return [f"template {template!r}: {error.message}"]
    allowed = scope.namespaces()
    problems = [
        f"unknown variable {name!r} in {template!r}" for name in sorted(names - set(allowed))
    ]
    for name, attribute in sorted(pairs):
        if name in allowed and attribute not in allowed[name]:
            problems.append(f"unknown variable {name}.{attribute} in {template!r}")
    return problems


def _check_step(step: Step, scope: Scope) -> list[str]:
    """Return what is wrong with one step, its own fields only."""
    app = scope.app
    problems: list[str] = []
    for template in step.templates():
        problems += _check_template(template, scope)
    secret_fields = [t for t in step.templates() if uses_secret(t)]
    if secret_fields and (step.kind != "fill" or uses_secret_outside_value(step)):
        problems.append("a secret may only be the value of a fill step")
    if step.kind == "goto" and step.goto and not _on_origin(step.goto, app):
        problems.append(
            f"goto {step.goto!r} must start with {{{{ integration.base_url }}}}"
            " or an allowed host of the app"
        )
    if step.kind == "totp" and app.secret(step.secret) is None:
        problems.append(f"totp reads secret {step.secret!r}, which the app does not declare")
    if step.kind == "refused" and scope.action not in ("login", None):
        problems.append("refused belongs in the login flow: it says the app turned down a sign-in")
    if step.for_each is not None and step.for_each not in scope.rows:
        problems.append(f"for_each reads vars.{step.for_each}, which no earlier extract_rows reads")
    return problems


def uses_secret_outside_value(step: Step) -> bool:
    """Tell whether a fill step reads a secret anywhere but its value."""
    return any(uses_secret(t) for t in step.templates(include_value=False))


def _on_origin(url: str, app: AppTemplate) -> bool:
    """Tell whether a goto URL stays on the integration's origin or an allowed host."""
    compact = url.replace(" ", "")
    if compact.startswith("{{integration.base_url}}"):
        return True
    return any(url.startswith(f"https://{host}") for host in app.allowed_hosts)


def fragments_of(app: AppTemplate) -> dict[str, Path]:
    """Return the app's fragment files by name (flows/<app>/_fragments/<name>.yaml)."""
    folder = app.folder / FRAGMENTS_DIR
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def _fragment(name: str, files: dict[str, Path]) -> Fragment | None:
    """Return a fragment by name, or None when it is missing or broken (reported at its file)."""
    path = files.get(name)
    if path is None:
        return None
    try:
        return load_fragment(path)
    except FlowError:
        return None


def _outputs(fragment: Fragment, files: dict[str, Path], seen: frozenset[str]) -> set[str]:
    """Return the vars a fragment sets for its caller, through the fragments it uses."""
    found: set[str] = set()
    for _, step in _walk(fragment.steps):
        if step.into:
            found.add(step.into)
        inner = _fragment(step.use, files) if step.use and step.use not in seen else None
        if inner is not None and step.use is not None:
            found |= _outputs(inner, files, seen | {step.use})
    return found


def _check_steps(
    steps: list[Step], path: Path, scope: Scope, files: dict[str, Path], prefix: str = "steps"
) -> list[Problem]:
    """Check steps in document order, learning the variables each one sets for the next."""
    problems: list[Problem] = []
    for index, step in enumerate(steps):
        where = f"{prefix}[{index}]"
        messages = _check_step(step, scope)
        if step.use is not None:
            messages += _check_use(step, scope, files)
        problems += [Problem(path, f"{where} ({step.title})", m) for m in messages]
        if step.into:
            scope.extracted.add(step.into)
        if step.kind == "extract_rows" and step.into:
            scope.rows.add(step.into)
        if step.for_each is not None:
            scope.extracted.add(step.as_)
        for name, children in step.children():
            problems += _check_steps(children, path, scope, files, f"{where}.{name}")
    return problems


def _check_use(step: Step, scope: Scope, files: dict[str, Path]) -> list[str]:
    """Return what is wrong with a `use`: the fragment and its parameters."""
    name = step.use or ""
    if name not in files:
        return [f"no fragment {name!r}: write {FRAGMENTS_DIR}/{name}.yaml beside the flows"]
    fragment = _fragment(name, files)
    if fragment is None:
        return [f"fragment {name!r} is broken: see {files[name]}"]
    problems = []
    unknown = sorted(set(step.with_) - set(fragment.params))
    if unknown:
        problems.append(f"{name} has no parameters {unknown} (it takes {sorted(fragment.params)})")
    missing = sorted(fragment.required() - set(step.with_))
    if missing:
        problems.append(f"{name} needs parameters {missing}")
    scope.extracted |= _outputs(fragment, files, frozenset({name}))
    return problems


def _cycle(name: str, files: dict[str, Path], trail: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Return the chain by which a fragment ends up using itself, or () when it does not."""
    if name in trail:
        return (*trail[trail.index(name) :], name)
    fragment = _fragment(name, files)
    if fragment is None:
        return ()
    for _, step in _walk(fragment.steps):
        if step.use is not None:
            chain = _cycle(step.use, files, (*trail, name))
            if chain:
                return chain
    return ()


def check_fragment(path: Path, app: AppTemplate) -> list[Problem]:
    """Return every problem of one fragment file: as a flow's, and recursion refused."""
    try:
        fragment = load_fragment(path)
    except FlowError as error:
        return [Problem(path, "file", str(error).removeprefix(f"{path}: "))]
    problems: list[Problem] = []
    if fragment.fragment != path.stem:
        problems.append(
            Problem(path, "fragment", f"{fragment.fragment!r} differs from the file name")
        )
    files = fragments_of(app)
    chain = _cycle(path.stem, files)
    if chain and chain[0] == path.stem:
        problems.append(
            Problem(path, "use", f"fragment {path.stem} uses itself: {' -> '.join(chain)}")
        )
    scope = Scope(app, None, params=set(fragment.params))
    return problems + _check_steps(fragment.steps, path, scope, files)


def check_flow(path: Path, app: AppTemplate) -> list[Problem]:
    """Return every problem of one flow file."""
    try:
        flow: Flow = load_flow(path)
    except FlowError as error:
        return [Problem(path, "file", str(error).removeprefix(f"{path}: "))]
    problems: list[Problem] = []
    if flow.action != path.stem:
        problems.append(Problem(path, "action", f"{flow.action!r} differs from the file name"))
    return problems + _check_steps(flow.steps, path, Scope(app, flow.action), fragments_of(app))


def check_inventory(app: AppTemplate) -> list[Problem]:
    """Return what `inventory:` names that list_users does not read: its rows, or a column."""
    spec = app.inventory
    flow_path = app.flow_path("list_users")
    if spec is None or "list_users" not in app.actions or not flow_path.is_file():
        return []
    where = app.folder / "app.yaml"
    try:
        flow = load_flow(flow_path)
    except FlowError:
        return []
    readers = [
        s for _, s in _walk(flow.steps) if s.extract_rows is not None and s.into == spec.rows
    ]
    if not readers:
        message = (
            f"list_users reads no rows into {spec.rows!r}: no extract_rows has into: {spec.rows}"
        )
        return [Problem(where, "inventory", message)]
    columns = {name for step in readers for name in step.columns}
    named = {"key": [spec.key], "match.column": [spec.match.column]}
    named["status"] = [spec.status] if spec.status else []
    named["entitlements"] = spec.entitlements
    return [
        Problem(where, "inventory", f"{field} {column!r} is no column list_users reads")
        for field, wanted in named.items()
        for column in wanted
        if column not in columns
    ]


def check_app(flows_dir: Path | None, name: str) -> list[Problem]:
    """Return every problem of an app: capabilities, its template, each declared flow."""
    try:
        app = load_app(flows_dir, name)
    except AppError as error:
        return [Problem(app_path(flows_dir, name), "template", str(error))]
    problems = check_capabilities(app, app.folder / "app.yaml") + check_inventory(app)
    for action in app.actions:
        path = app.flow_path(action)
        if not path.is_file():
            problems.append(Problem(path, "file", f"action {action!r} is declared but missing"))
            continue
        problems += check_flow(path, app)
    for path in fragments_of(app).values():
        problems += check_fragment(path, app)
    return problems
