"""The flow language: YAML steps for one app action, validated and templated."""

import hashlib
import re
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from engine.constants import COMPILED_TEMPLATES_KEPT, REPEAT_MAX_ROUNDS

FLOW_VERSION = 1
STEP_KINDS = (
    "goto",
    "click",
    "fill",
    "select",
    "check",
    "uncheck",
    "press",
    "upload",
    "wait_for",
    "expect",
    "dialog",
    "dismiss_overlay",
    "totp",
    "extract",
    "extract_rows",
    "if_visible",
    "unless_visible",
    "if_all",
    "repeat",
    "for_each",
    "use",
    "screenshot",
    "already",
    "fail",
    "needs_human",
    "refused",
)


BRANCHING = ("if_visible", "unless_visible", "if_all")
LOOPS = ("repeat", "for_each")
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


class FlowError(Exception):
    """A flow file is broken; the message names the file, step and field."""


class Locator(BaseModel):
    """How to find an element: exactly one strategy, optionally narrowed."""

    model_config = ConfigDict(extra="forbid")
    role: str | None = None
    name: str | None = Field(default=None, description="Accessible name, with role.")
    label: str | None = None
    placeholder: str | None = None
    text: str | None = None
    test_id: str | None = None
    css: str | None = None
    exact: bool = False
    has_text: str | None = Field(default=None, description="Keep elements containing this text.")
    nth: int | None = None

    @model_validator(mode="after")
    def _one_strategy(self) -> "Locator":
        """Refuse zero or several strategies: the runner must know what was meant."""
        chosen = [
            k
            for k in ("role", "label", "placeholder", "text", "test_id", "css")
            if getattr(self, k)
        ]
        if len(chosen) != 1:
            raise ValueError(
                "give exactly one of role, label, placeholder, text, test_id, css"
                f" (got {chosen or 'none'})"
            )
        if self.name is not None and self.role is None:
            raise ValueError("name goes with role")
        return self

    def describe(self) -> str:
        """Return a short human form, as recorded on the Step and in errors."""
        parts = [
            f"{k}={v!r}"
            for k, v in self.model_dump(exclude_defaults=True).items()
            if k not in ("exact",)
        ]
        return ", ".join(parts)


class Condition(Locator):
    """A check on one element for `if_all`: visible, and optionally a value, text or state."""

    value: str | None = None
    contains: str | None = Field(default=None, description="Text the element contains.")
    checked: bool | None = None


class Column(Locator):
    """One field of each row for `extract_rows`: an element's text, or one of its attributes."""

    attribute: str | None = Field(
        default=None, description="Read this attribute instead of the text (href, data-id...)."
    )


class Expectation(BaseModel):
    """What an `expect` or `wait_for` step waits for."""

    model_config = ConfigDict(extra="forbid")
    state: Literal["visible", "hidden", "attached", "detached"] | None = None
    text: str | None = None
    value: str | None = None
    url: str | None = Field(default=None, description="A regular expression the URL must match.")
    load_state: Literal["load", "domcontentloaded", "networkidle"] | None = None
    response: str | None = Field(
        default=None,
        description="A regular expression of a URL: wait for its response, counting those"
        " that came since the previous step began.",
    )
    request: str | None = Field(
        default=None,
        description="A regular expression of a URL: wait for a request to it, counting those"
        " sent since the previous step began.",
    )

    @model_validator(mode="after")
    def _network_alone(self) -> "Expectation":
        """Refuse a wait for a response or request mixed with anything else: one per step."""
        network = [k for k in ("response", "request") if getattr(self, k) is not None]
        others = [k for k, v in self.model_dump(exclude_none=True).items() if k not in network]
        if network and (len(network) > 1 or others):
            raise ValueError(f"{network[0]} goes alone, not with {(network[1:] + others)[0]}")
        return self


class Repeat(BaseModel):
    """Run a step's `steps` while (or until) a condition holds, at most `max` rounds."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    while_: Condition | None = Field(
        default=None, alias="while", description="Checked before each round; stop when false."
    )
    until: Condition | None = Field(
        default=None, description="Checked after each round; stop when true."
    )
    max: int = Field(
        ge=1,
        le=REPEAT_MAX_ROUNDS,
        description="The most rounds; the step fails when the condition still says go on.",
    )

    @model_validator(mode="after")
    def _one_condition(self) -> "Repeat":
        """Refuse a loop with no condition or two: it must say when it ends."""
        if (self.while_ is None) == (self.until is None):
            raise ValueError("repeat needs exactly one of while, until")
        return self

    @property
    def condition(self) -> Condition:
        """Return the loop's one condition."""
        found = self.while_ or self.until
        assert found is not None
        return found


class Step(BaseModel):
    """One step of a flow: exactly one kind key, plus the fields that kind uses."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    goto: str | None = None
    click: Locator | None = None
    fill: Locator | None = None
    select: Locator | None = None
    check: Locator | None = None
    uncheck: Locator | None = None
    press: Locator | None = None
    upload: Locator | None = None
    wait_for: Locator | Expectation | None = None
    expect: Locator | Expectation | None = None
    dialog: Literal["accept", "dismiss"] | None = Field(
        default=None, description="Answer the next JavaScript dialog; arm it before the click."
    )
    dismiss_overlay: Locator | None = Field(
        default=None, description="An overlay that may block clicks; `close` clears it."
    )
    totp: Locator | None = None
    extract: Locator | None = None
    extract_rows: Locator | None = Field(default=None, description="One element per row.")
    if_visible: Locator | None = None
    unless_visible: Locator | None = None
    if_all: list[Condition] | None = None
    repeat: Repeat | None = None
    for_each: str | None = Field(
        default=None,
        pattern=IDENTIFIER,
        description="The rows an extract_rows read (its `into`): run `steps` for each one.",
    )
    use: str | None = Field(
        default=None,
        pattern=IDENTIFIER,
        description="Run the fragment flows/<app>/_fragments/<use>.yaml with `with` parameters.",
    )
    screenshot: str | None = None
    already: str | None = None
    fail: str | None = None
    needs_human: str | None = Field(
        default=None,
        description="Stop: only a person can go on (CAPTCHA, email check, expired password).",
    )
    refused: str | None = Field(
        default=None,
        description="In login: the app refused the service account; counts toward the breaker.",
    )

    value: str | None = Field(default=None, description="For fill, select and expect.")
    key: str | None = Field(default=None, description="For press, e.g. Enter.")
    secret: str = Field(default="totp_seed", description="For totp: the secret with the seed.")
    attribute: str | None = Field(default=None, description="For extract: an attribute.")
    into: str | None = Field(default=None, description="For extract: the variable name.")
    state: Literal["visible", "hidden", "attached", "detached"] | None = None
    text: str | None = Field(default=None, description="For expect: text the element holds.")
    checked: bool | None = Field(default=None, description="For expect: ticked or not.")
    files: list[str] = Field(default_factory=list, description="For upload: paths in the app.")
    close: Locator | None = Field(default=None, description="For dismiss_overlay.")
    columns: dict[str, "Column"] = Field(
        default_factory=dict, description="For extract_rows: a locator inside each row per field."
    )
    next_page: Locator | None = Field(
        default=None,
        description="For extract_rows: the control that replaces the rows with the next page.",
    )
    load_more: Locator | None = Field(
        default=None, description="For extract_rows: the control that appends more rows."
    )
    unique_by: str | None = Field(
        default=None,
        description="For extract_rows: the column whose value names a row; a repeat is dropped.",
    )
    max_pages: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="For extract_rows: the most pages; more still to read fails the step.",
    )
    frame: str | None = Field(default=None, description="CSS of the iframe the locators are in.")
    fallbacks: list[Locator] = Field(default_factory=list)
    then: list["Step"] = Field(default_factory=list)
    otherwise: list["Step"] = Field(default_factory=list, alias="else")
    steps: list["Step"] = Field(
        default_factory=list, description="For repeat and for_each: the steps of each round."
    )
    with_: dict[str, str] = Field(
        default_factory=dict,
        alias="with",
        description="For use: the fragment's parameters, templated in the caller's variables.",
    )
    as_: str = Field(
        default="row",
        alias="as",
        pattern=IDENTIFIER,
        description="For for_each: the row's name, read as vars.<as> inside the steps.",
    )
    timeout_ms: int | None = Field(default=None, gt=0, le=300_000)
    full_page: bool = Field(
        default=False, description="Screenshot the whole page after this step, not the viewport."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> "Step":
        """Refuse a step with no kind or several, and a kind missing its fields."""
        kinds = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a step needs exactly one of {', '.join(STEP_KINDS)} (got {kinds})")
        kind = kinds[0]
        if kind == "fill" and self.value is None:
            raise ValueError("fill needs a value")
        if kind == "select" and self.value is None:
            raise ValueError("select needs a value")
        if kind == "press" and self.key is None:
            raise ValueError("press needs a key")
        if kind in ("extract", "extract_rows") and not self.into:
            raise ValueError(f"{kind} needs into")
        if kind == "extract_rows" and not self.columns:
            raise ValueError("extract_rows needs columns")
        if self.next_page is not None and self.load_more is not None:
            raise ValueError("give next_page (pages replace rows) or load_more (rows append)")
        if self.unique_by is not None and self.unique_by not in self.columns:
            raise ValueError(f"unique_by {self.unique_by!r} is not one of the columns")
        if kind == "upload" and not self.files:
            raise ValueError("upload needs files")
        if kind == "dismiss_overlay" and self.close is None:
            raise ValueError("dismiss_overlay needs close")
        if kind == "if_all" and not self.if_all:
            raise ValueError("if_all needs at least one condition")
        if kind not in BRANCHING and (self.then or self.otherwise):
            raise ValueError("then/else go with if_visible, unless_visible or if_all")
        if kind in LOOPS and not self.steps:
            raise ValueError(f"{kind} needs steps")
        if kind not in LOOPS and self.steps:
            raise ValueError("steps go with repeat or for_each")
        if kind != "use" and self.with_:
            raise ValueError("with goes with use")
        return self

    def children(self) -> list[tuple[str, list["Step"]]]:
        """Return the step's nested step lists with their field names, in document order."""
        return [
            (n, s)
            for n, s in (("then", self.then), ("else", self.otherwise), ("steps", self.steps))
            if s
        ]

    @property
    def kind(self) -> str:
        """Return the step's kind key."""
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    @property
    def locator(self) -> Locator | None:
        """Return the step's main locator, if its kind has one."""
        target = getattr(self, self.kind)
        return target if isinstance(target, Locator) else None

    @property
    def title(self) -> str:
        """Return the step's name, or a default made of its kind and target."""
        if self.name:
            return self.name
        if self.locator:
            return f"{self.kind} {self.locator.describe()}"
        if self.kind == "if_all":
            return "if all of " + "; ".join(c.describe() for c in self.if_all or [])
        if self.repeat is not None:
            word = "while" if self.repeat.while_ else "until"
            return f"repeat {word} {self.repeat.condition.describe()}"
        return f"{self.kind} {getattr(self, self.kind)}"

    def templates(self, *, include_value: bool = True) -> list[str]:
        """Return every templated string of the step itself, for checking."""
        value = self.value if include_value else None
        fields = (
            self.goto,
            value,
            self.text,
            self.already,
            self.fail,
            self.needs_human,
            self.refused,
            self.screenshot,
        )
        found: list[str] = [v for v in fields if isinstance(v, str)]
        found += list(self.with_.values())
        if isinstance(self.wait_for, Expectation):
            found += [v for v in (self.wait_for.response, self.wait_for.request) if v]
        for spec in self.locators():
            found += [v for v in spec.model_dump().values() if isinstance(v, str)]
        return found

    def locators(self) -> list[Locator]:
        """Return every locator the step uses, fallbacks and conditions included."""
        specs: list[Locator] = [s for s in (self.locator, *self.fallbacks) if s is not None]
        specs += list(self.if_all or []) + list(self.columns.values())
        specs += [self.repeat.condition] if self.repeat else []
        specs += [s for s in (self.close, self.next_page, self.load_more) if s is not None]
        return specs


class Flow(BaseModel):
    """One app action as a list of steps."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = FLOW_VERSION
    action: str
    description: str | None = None
    steps: list[Step] = Field(min_length=1)


class Param(BaseModel):
    """One parameter of a fragment: required unless it has a default."""

    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    default: str | None = None


class Fragment(BaseModel):
    """Steps several flows of one app share, run by `use:` with explicit parameters."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = FLOW_VERSION
    fragment: str = Field(pattern=IDENTIFIER, description="The file's name, without .yaml.")
    description: str | None = None
    params: dict[str, Param] = Field(
        default_factory=dict, description="Read as params.<name> by the fragment's steps."
    )
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _param_names(self) -> "Fragment":
        """Refuse a parameter name a template could not read as params.<name>."""
        bad = sorted(n for n in self.params if not re.match(IDENTIFIER, n))
        if bad:
            raise ValueError(f"parameter names must be identifiers: {bad}")
        return self

    def required(self) -> set[str]:
        """Return the parameters a `use` must give: those without a default."""
        return {name for name, param in self.params.items() if param.default is None}


FRAGMENTS_DIR = "_fragments"
"""The folder of an app's fragments, beside its flows."""


def flow_json_schema() -> dict[str, Any]:
    """Return the published JSON Schema of a flow or fragment file, for editors and CI."""
    schema = TypeAdapter(Flow | Fragment).json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://usher.dev/schemas/flow-v{FLOW_VERSION}.json"
    schema["title"] = "Usher flow or fragment"
    return schema


def load_flow(path: Path) -> Flow:
    """Parse and validate a flow file, naming the file and field on error."""
    loaded = _load_any(path)
    if not isinstance(loaded, Flow):
        raise FlowError(f"{path}: a fragment, not a flow")
    return loaded


def load_fragment(path: Path) -> Fragment:
    """Parse and validate a fragment file, naming the file and field on error."""
    loaded = _load_any(path)
    if not isinstance(loaded, Fragment):
        raise FlowError(f"{path}: a flow, not a fragment (it needs fragment: and no action:)")
    return loaded


def _load_any(path: Path) -> "Flow | Fragment":
    """Parse a flow or fragment file, cached by modification time."""
    try:
        return _load_flow(path, path.stat().st_mtime)
    except OSError as error:
        raise FlowError(f"{path}: {error.strerror}") from error


@cache
def _load_flow(path: Path, _mtime: float) -> "Flow | Fragment":
    """Parse a flow, or a fragment when the file says `fragment:`; cached by modification time."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise FlowError(f"{path}: not YAML: {' '.join(str(error).split())}") from error
    model: type[Flow] | type[Fragment] = (
        Fragment if isinstance(data, dict) and "fragment" in data else Flow
    )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise FlowError(f"{path}: {problems}") from error


def fragment_hashes(steps: list[Step], folder: Path) -> dict[str, str]:
    """Return the SHA-256 of every fragment some steps use, nested ones too, for provenance.

    A missing or broken fragment is left out: the step that uses it fails and says why.
    """
    found: dict[str, str] = {}
    pending = list(steps)
    while pending:
        step = pending.pop()
        pending += [child for _, children in step.children() for child in children]
        if step.use is None or step.use in found:
            continue
        path = folder / f"{step.use}.yaml"
        try:
            found[step.use] = hashlib.sha256(path.read_bytes()).hexdigest()
            pending += load_fragment(path).steps
        except (OSError, FlowError):
            continue
    return dict(sorted(found.items()))


_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@lru_cache(maxsize=COMPILED_TEMPLATES_KEPT)
def _compiled(template: str) -> Template:
    """Compile a templated value once: a job renders the same few dozen names and values on
    every step, and compiling is most of what rendering costs."""
    return _env.from_string(template)


def render(template: str, variables: dict[str, Any]) -> str:
    """Render a templated value; an unknown variable is an error, never an empty string."""
    try:
        return _compiled(template).render(variables)
    except TemplateError as error:
        raise FlowError(f"template {template!r}: {error.message}") from error


def uses_secret(template: str | None) -> bool:
    """Tell whether a templated value reads a secret, so it is masked and origin-checked."""
    return template is not None and "secrets." in template
