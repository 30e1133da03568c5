"""The flow language: YAML steps for one app action, validated and templated."""

from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

FLOW_VERSION = 1
STEP_KINDS = (
    "goto",
    "click",
    "fill",
    "select",
    "check",
    "uncheck",
    "press",
    "wait_for",
    "expect",
    "totp",
    "extract",
    "if_visible",
    "unless_visible",
    "screenshot",
    "already",
    "fail",
)


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


class Expectation(BaseModel):
    """What an `expect` or `wait_for` step waits for."""

    model_config = ConfigDict(extra="forbid")
    state: Literal["visible", "hidden", "attached", "detached"] | None = None
    text: str | None = None
    value: str | None = None
    url: str | None = Field(default=None, description="A regular expression the URL must match.")
    load_state: Literal["load", "domcontentloaded", "networkidle"] | None = None


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
    wait_for: Locator | Expectation | None = None
    expect: Locator | Expectation | None = None
    totp: Locator | None = None
    extract: Locator | None = None
    if_visible: Locator | None = None
    unless_visible: Locator | None = None
    screenshot: str | None = None
    already: str | None = None
    fail: str | None = None

    value: str | None = Field(default=None, description="For fill, select and expect.")
    key: str | None = Field(default=None, description="For press, e.g. Enter.")
    secret: str = Field(default="totp_seed", description="For totp: the secret with the seed.")
    attribute: str | None = Field(default=None, description="For extract: an attribute.")
    into: str | None = Field(default=None, description="For extract: the variable name.")
    state: Literal["visible", "hidden", "attached", "detached"] | None = None
    text: str | None = Field(default=None, description="For expect: text the element holds.")
    fallbacks: list[Locator] = Field(default_factory=list)
    then: list["Step"] = Field(default_factory=list)
    otherwise: list["Step"] = Field(default_factory=list, alias="else")
    timeout_ms: int | None = Field(default=None, gt=0, le=300_000)

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
        if kind == "extract" and not self.into:
            raise ValueError("extract needs into")
        if kind not in ("if_visible", "unless_visible") and (self.then or self.otherwise):
            raise ValueError("then/else go with if_visible or unless_visible")
        return self

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
        target = self.locator.describe() if self.locator else getattr(self, self.kind)
        return f"{self.kind} {target}"


class Flow(BaseModel):
    """One app action as a list of steps."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = FLOW_VERSION
    action: str
    description: str | None = None
    steps: list[Step] = Field(min_length=1)


def load_flow(path: Path) -> Flow:
    """Parse and validate a flow file, naming the file and field on error."""
    try:
        return _load_flow(path, path.stat().st_mtime)
    except OSError as error:
        raise FlowError(f"{path}: {error.strerror}") from error


@cache
def _load_flow(path: Path, _mtime: float) -> Flow:
    """Parse a flow; cached by modification time."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise FlowError(f"{path}: not YAML: {error}") from error
    try:
        return Flow.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise FlowError(f"{path}: {problems}") from error


_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def render(template: str, variables: dict[str, Any]) -> str:
    """Render a templated value; an unknown variable is an error, never an empty string."""
    try:
        return _env.from_string(template).render(variables)
    except TemplateError as error:
        raise FlowError(f"template {template!r}: {error.message}") from error


def uses_secret(template: str | None) -> bool:
    """Tell whether a templated value reads a secret, so it is masked and origin-checked."""
    return template is not None and "secrets." in template
