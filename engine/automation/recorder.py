"""Turn a `playwright codegen` recording (Python, async or sync) into a flow to edit.

The recording is parsed, never run: `ast` reads each statement, and only the calls codegen
writes are understood (goto, click, fill, press, select_option, check, uncheck,
set_input_files, the `expect(...)` assertions and the dialog handler). The values typed
become templates: a sample value the author names becomes `{{ user.email }}`, a stored
secret becomes `{{ secrets.name }}`, a one-time code typed into a code field becomes a
`totp` step. A value of a secret left anywhere else refuses the import: a flow file must
never hold one. What the recording did to sign in is dropped from any action but `login`,
since Usher runs the app's login flow before each action.
"""

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.integrations import get_integration
from engine.apps.template import AppTemplate
from engine.automation.language import Flow
from engine.constants import RECORDER_MIN_SECRET_LEN
from engine.storage.vault import Vault

LOCATOR_CALLS = {
    "get_by_role": "role",
    "get_by_label": "label",
    "get_by_placeholder": "placeholder",
    "get_by_text": "text",
    "get_by_test_id": "test_id",
    "get_by_alt_text": "text",
    "get_by_title": "text",
    "locator": "css",
}
"""Codegen's locator methods and the flow locator strategy each becomes."""
IGNORED_CALLS = frozenset({"close", "new_page", "new_context", "launch", "wait_for_timeout"})
"""Set-up, tear-down and sleeps: nothing a flow step should repeat."""
CODE_FIELD = re.compile(r"code|otp|one[- ]time|token|2fa|mfa|verification|authenticator", re.I)
"""The name of a field a one-time code is typed into."""
ONE_TIME_CODE = re.compile(r"^\d{6,8}$")
PASSWORD_FIELD = re.compile(r"password|passphrase|secret", re.I)
BRITTLE_CSS = re.compile(
    r"nth-child|nth-of-type|:nth\(|>>|^/|^xpath=|\.(?:css|sc|jsx|emotion)-[\w-]+|\b[a-z]+-[0-9a-f]{5,}\b"
    r"|#[\w-]*\d{3,}",
    re.I,
)
"""CSS that breaks when the page is re-rendered: positions, generated class names and ids."""
SAMPLE_NAMESPACES = ("user", "account", "entitlement")


class RecordingError(Exception):
    """The recording cannot become a flow; the message says which line and why."""


@dataclass
class Imported:
    """The flow made of a recording, as YAML, and what the author should look at."""

    flow: Flow
    yaml: str
    notes: list[str] = field(default_factory=list)
    dropped: int = 0
    """How many recorded steps signed in, dropped because the login flow does that."""


@dataclass
class _Recorded:
    """One statement of the recording, understood: a step and what it typed."""

    line: int
    step: dict[str, Any]
    secret: bool = False
    """The step typed a secret or a one-time code: it belongs to signing in."""
    note: str | None = None


@dataclass(frozen=True)
class _Call:
    """One link of a call chain such as page.get_by_role("button", name="Save").click()."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    called: bool = True


def parse_samples(pairs: list[str]) -> dict[str, str]:
    """Turn name=value pairs into {variable: sample}; a bare name means `user.<name>`."""
    samples: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name or not value:
            raise RecordingError(f"a sample is name=value, e.g. email=jane@example.com: {pair!r}")
        variable = name if "." in name else f"user.{name}"
        if variable.split(".", 1)[0] not in SAMPLE_NAMESPACES:
            raise RecordingError(
                f"sample {name!r}: a variable is user.*, account.* or entitlement.*"
            )
        samples[variable] = value
    return samples


def import_recording(
    source: str,
    *,
    template: AppTemplate,
    action: str,
    samples: Mapping[str, str],
    secrets: Mapping[str, str],
) -> Imported:
    """Return the flow a recording makes for one action of an app; refuse a secret's value."""
    if action not in template.actions:
        raise RecordingError(f"app {template.name} declares no action {action!r}")
    recorded = list(_read(source, template, samples, secrets))
    if not recorded:
        raise RecordingError("the recording holds no step codegen writes (goto, click, fill...)")
    dropped = 0
    if action != "login":
        signed_in = max((i for i, r in enumerate(recorded) if r.secret), default=-1)
        if signed_in >= 0:
            dropped = _sign_in_end(recorded, signed_in) + 1
            recorded = recorded[dropped:]
    if not recorded:
        raise RecordingError("the recording only signs in; record the action after signing in")
    steps = _tidy([r.step for r in recorded])
    _refuse_secrets(steps, secrets)
    document = {
        "version": 1,
        "action": action,
        "description": f"Imported from a playwright codegen recording of {action}.",
        "steps": steps,
    }
    try:
        flow = Flow.model_validate(document)
    except ValidationError as error:
        raise RecordingError(f"the imported flow is not valid: {error}") from None
    notes = [f"line {r.line}: {r.note}" for r in recorded if r.note]
    if dropped:
        notes.insert(
            0,
            f"dropped the first {dropped} recorded step(s): they sign in, which the app's "
            "login flow does before every action",
        )
    if not any(s.get("expect") for s in steps[-1:]):
        notes.append(
            "the flow does not end with an expect: add one that proves the action took effect"
        )
    if not any(k in s for s in steps for k in ("if_visible", "unless_visible", "if_all")):
        notes.append(
            "the flow acts without looking first: add an if_visible step ending in `already` "
            "so that a retry never acts twice (flows/README.md)"
        )
    return Imported(flow, _dump(document, recorded), notes, dropped)


def _sign_in_end(recorded: list[_Recorded], last_secret: int) -> int:
    """Return the index of the last sign-in step: the last secret typed, or what submits it."""
    following = last_secret + 1
    if following < len(recorded) and _submits(recorded[following].step):
        return following
    return last_secret


def _submits(step: dict[str, Any]) -> bool:
    """Tell whether a step submits what was typed: a click or an Enter."""
    return "click" in step or step.get("key") == "Enter"


def _read(
    source: str,
    template: AppTemplate,
    samples: Mapping[str, str],
    secrets: Mapping[str, str],
) -> Iterator[_Recorded]:
    """Yield each statement of the recording that makes a step, in order."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise RecordingError(f"not a Python recording: line {error.lineno}: {error.msg}") from None
    values = _Values(template, samples, secrets)
    for statement in _statements(tree):
        if isinstance(statement, ast.With | ast.AsyncWith):
            raise RecordingError(
                f"line {statement.lineno}: the recording waits for a popup or a download; "
                "a flow runs in one page: record the action without opening a new window"
            )
        if not isinstance(statement, ast.Expr):
            continue
        made = _step(statement.value, values)
        if made is not None:
            made.line = statement.lineno
            yield made


def _statements(tree: ast.Module) -> Iterator[ast.stmt]:
    """Yield the recorded statements: the body of run() or test_*(), else the module's."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
            node.name == "run" or node.name.startswith("test")
        ):
            yield from _flatten(node.body)
            return
    yield from _flatten(tree.body)


def _flatten(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Yield statements, entering `async with async_playwright()` blocks codegen may write."""
    for statement in body:
        if isinstance(statement, ast.With | ast.AsyncWith) and any(
            "playwright" in ast.unparse(item.context_expr) for item in statement.items
        ):
            yield from _flatten(statement.body)
        else:
            yield statement


def _chain(node: ast.expr) -> list[_Call]:
    """Return a call chain from its root name: page.get_by_label("x").fill("y") -> 3 links."""
    if isinstance(node, ast.Await):
        return _chain(node.value)
    if isinstance(node, ast.Name):
        return [_Call(node.id, called=False)]
    if isinstance(node, ast.Attribute):
        return [*_chain(node.value), _Call(node.attr, called=False)]
    if isinstance(node, ast.Call):
        head = _chain(node.func)
        last = head[-1]
        args = tuple(_literal(a) for a in node.args)
        kwargs = {k.arg: _literal(k.value) for k in node.keywords if k.arg}
        return [*head[:-1], _Call(last.name, args, kwargs)]
    raise RecordingError(f"line {node.lineno}: cannot read {ast.unparse(node)!r}")


def _literal(node: ast.expr) -> Any:
    """Return a literal argument; a nested locator or regex stays as its chain."""
    if isinstance(node, ast.Lambda):
        return ast.unparse(node)
    try:
        return ast.literal_eval(node)
    except ValueError:
        return _chain(node)


class _Values:
    """Template recorded values: samples to variables, secrets to secret references.

    A sample matches whole: `7` is the account's key in `/users/7`, not in `/users/17`.
    """

    def __init__(
        self, template: AppTemplate, samples: Mapping[str, str], secrets: Mapping[str, str]
    ) -> None:
        ordered = sorted(samples.items(), key=lambda kv: -len(kv[1]))
        self.variables = {sample: "{{ " + variable + " }}" for variable, sample in ordered}
        self.found = re.compile("(" + "|".join(_whole(s) for s in self.variables) + ")")
        self.secrets = {v: k for k, v in secrets.items() if len(v) >= RECORDER_MIN_SECRET_LEN}
        self.totp_secret = next((s.name for s in template.secrets if s.kind == "totp_seed"), None)
        self.origin: str | None = None
        """The app's origin as recorded: the first page opened."""

    def _pieces(self, text: str) -> list[tuple[str, bool]]:
        """Split text into (piece, is a sample) around every whole sample value."""
        if not self.variables:
            return [(text, False)]
        parts = self.found.split(text)
        return [(part, index % 2 == 1) for index, part in enumerate(parts) if part]

    def text(self, value: str) -> str:
        """Return a recorded string with every sample value replaced by its variable."""
        return "".join(
            self.variables[piece] if sample else piece.replace("{{", "{{ '{{' }}")
            for piece, sample in self._pieces(value)
        )

    def url(self, url: str) -> str:
        """Return a URL on the recorded app's origin as `{{ integration.base_url }}...`."""
        origin = _origin(url)
        if self.origin is None:
            self.origin = origin
        if origin == self.origin:
            return "{{ integration.base_url }}" + self.text(url[len(origin) :])
        return self.text(url)

    def pattern(self, url: str) -> str:
        """Return a regular expression matching a recorded URL's path, samples as variables."""
        path = url[len(_origin(url)) :] if "://" in url else url
        return "".join(
            self.variables[piece] if sample else re.escape(piece)
            for piece, sample in self._pieces(path)
        )

    def secret(self, value: str) -> str | None:
        """Return the name of the stored secret a typed value equals, if any."""
        return self.secrets.get(value)


def _whole(sample: str) -> str:
    """Return a pattern matching a sample not glued to letters or digits on either side."""
    before = r"(?<![A-Za-z0-9])" if sample[:1].isalnum() else ""
    after = r"(?![A-Za-z0-9])" if sample[-1:].isalnum() else ""
    return before + re.escape(sample) + after


def _origin(url: str) -> str:
    """Return scheme://host[:port] of a URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _step(node: ast.expr, values: _Values) -> _Recorded | None:
    """Return the step one recorded call makes, or None for set-up and tear-down."""
    chain = _chain(node)
    if chain[0].name == "expect":
        return _expectation(chain, values)
    verb = chain[-1]
    if verb.name in IGNORED_CALLS or chain[0].name in ("browser", "context", "playwright"):
        return None
    if verb.name == "once" and verb.args and verb.args[0] == "dialog":
        answer = "accept" if "accept" in ast.unparse(node) else "dismiss"
        return _Recorded(0, {"name": f"{answer.capitalize()} the dialog", "dialog": answer})
    if verb.name == "goto":
        url = str(verb.args[0])
        target = values.url(url)
        path = target.removeprefix("{{ integration.base_url }}") or "/"
        return _Recorded(0, {"name": f"Open {path}", "goto": target})
    if len(chain) < 3:
        raise RecordingError(f"line {node.lineno}: codegen never writes {ast.unparse(node)!r}")
    locator, note = _locator(chain[1:-1], values)
    return _framed(_act(verb, locator, note, values, node), locator)


def _act(
    verb: _Call, locator: dict[str, Any], note: str | None, values: _Values, node: ast.expr
) -> _Recorded:
    """Return the step a call on a locator makes: click, fill, press, select, check..."""
    what = _describe(locator)
    if verb.name in ("click", "dblclick"):
        return _Recorded(0, {"name": f"Click {what}", "click": locator}, note=note)
    if verb.name in ("check", "uncheck"):
        return _Recorded(
            0, {"name": f"{verb.name.capitalize()} {what}", verb.name: locator}, note=note
        )
    if verb.name == "press":
        key = str(verb.args[0])
        return _Recorded(
            0, {"name": f"Press {key} in {what}", "press": locator, "key": key}, note=note
        )
    if verb.name == "select_option":
        value = verb.args[0] if verb.args else verb.kwargs.get("label", "")
        if isinstance(value, list):
            raise RecordingError(f"line {node.lineno}: a flow selects one option at a time")
        text = values.text(str(value))
        return _Recorded(
            0, {"name": f"Choose {text} in {what}", "select": locator, "value": text}, note=note
        )
    if verb.name == "set_input_files":
        files = verb.args[0] if verb.args else []
        files = [files] if isinstance(files, str) else list(files)
        return _Recorded(
            0, {"name": f"Upload to {what}", "upload": locator, "files": files}, note=note
        )
    if verb.name == "fill":
        return _fill(locator, str(verb.args[0]), what, values, note, node)
    raise RecordingError(f"line {node.lineno}: the flow language has no step for .{verb.name}()")


def _fill(
    locator: dict[str, Any],
    value: str,
    what: str,
    values: _Values,
    note: str | None,
    node: ast.expr,
) -> _Recorded:
    """Return a fill: a secret by name, a one-time code as a totp step, a sample as a variable."""
    named = values.secret(value)
    if named is not None:
        step = {"name": f"Type the {named.replace('_', ' ')}", "fill": locator}
        step["value"] = "{{ secrets." + named + " }}"
        return _Recorded(0, step, secret=True, note=note)
    field_name = " ".join(str(v) for v in locator.values())
    if ONE_TIME_CODE.match(value) and CODE_FIELD.search(field_name):
        if values.totp_secret is None:
            raise RecordingError(
                f"line {node.lineno}: a one-time code is typed, but the app has no totp_seed secret"
            )
        step = {"name": "Type the authentication code", "totp": locator}
        step["secret"] = values.totp_secret
        return _Recorded(0, step, secret=True, note=note)
    if PASSWORD_FIELD.search(field_name):
        raise RecordingError(
            f"line {node.lineno}: a password is typed into {what}, and it is not a stored secret "
            "of the integration: store it (usher integrations set-secret) and import with "
            "--integration, so the flow names the secret instead of holding its value"
        )
    text = values.text(value)
    label = text.removeprefix("{{ ").removesuffix(" }}").rpartition(".")[2].replace("_", " ")
    name = f"Type the {label}" if text.startswith("{{") and text.endswith("}}") else f"Fill {what}"
    return _Recorded(0, {"name": name, "fill": locator, "value": text}, note=note)


def _expectation(chain: list[_Call], values: _Values) -> _Recorded:
    """Return the expect step of `expect(locator).to_...()` or `expect(page).to_have_url()`."""
    target = chain[0].args[0] if chain[0].args else None
    check = chain[-1]
    if not isinstance(target, list):
        raise RecordingError("an expect() without a locator or page")
    if len(target) == 1:
        if check.name != "to_have_url":
            raise RecordingError(f"the flow language cannot expect {check.name} of a page")
        pattern = check.args[0]
        text = values.pattern(pattern) if isinstance(pattern, str) else values.text(_regex(pattern))
        return _Recorded(0, {"name": "The page is the expected one", "expect": {"url": text}})
    locator, note = _locator(target[1:], values)
    what = _describe(locator)
    step: dict[str, Any] = {"name": f"{_capital(what)} shown", "expect": locator}
    if check.name in ("to_have_text", "to_contain_text"):
        step["text"] = values.text(str(check.args[0]))
    elif check.name == "to_have_value":
        step["value"] = values.text(str(check.args[0]))
    elif check.name in ("to_be_checked", "not_to_be_checked"):
        step["checked"] = check.name == "to_be_checked"
    elif check.name == "to_be_hidden":
        step["state"] = "hidden"
        step["name"] = f"{_capital(what)} gone"
    elif check.name != "to_be_visible":
        raise RecordingError(f"the flow language has no expect for {check.name}")
    return _framed(_Recorded(0, step, note=note), locator)


def _framed(recorded: _Recorded, locator: dict[str, Any]) -> _Recorded:
    """Move a recorded iframe from the locator to the step, where the flow language has it."""
    if "frame" in locator:
        recorded.step["frame"] = locator.pop("frame")
    return recorded


def _capital(text: str) -> str:
    """Return text with its first letter upper-case, the rest as it was."""
    return text[:1].upper() + text[1:]


def _regex(chain: Any) -> str:
    """Return the pattern of a recorded re.compile("...")."""
    if isinstance(chain, list) and chain[-1].name == "compile" and chain[-1].args:
        return str(chain[-1].args[0])
    raise RecordingError("an expected URL must be a string or re.compile(...)")


def _locator(links: list[_Call], values: _Values) -> tuple[dict[str, Any], str | None]:
    """Return a flow locator for a recorded chain, and a note when it needs a look."""
    locator: dict[str, Any] = {}
    frame: str | None = None
    notes: list[str] = []
    for link in links:
        if link.name in LOCATOR_CALLS:
            if locator:
                notes.append(
                    f"the recording narrows {_describe(locator)} to an element inside it; "
                    "the flow keeps only the inner locator: check it is unique"
                )
                locator = {}
            locator.update(_strategy(link, values))
        elif link.name == "frame_locator" or (link.name == "content_frame" and locator.get("css")):
            frame = str(link.args[0]) if link.args else locator["css"]
            locator = {}
        elif link.name == "filter":
            if not isinstance(link.kwargs.get("has_text"), str):
                raise RecordingError('a filter() other than has_text="..." has no flow form')
            locator["has_text"] = values.text(link.kwargs["has_text"])
        elif link.name in ("first", "last", "nth"):
            if link.name == "last":
                raise RecordingError("a flow locator takes nth from the start, not .last")
            locator["nth"] = int(link.args[0]) if link.name == "nth" else 0
            notes.append("the recording picks an element by position: prefer a unique locator")
        else:
            raise RecordingError(f"the flow language has no locator for .{link.name}")
    if frame:
        locator = {**locator, "frame": frame}
    css = locator.get("css")
    if css is not None and BRITTLE_CSS.search(css):
        notes.append(f"brittle CSS {css!r}: replace it with a role, label or test id")
    elif css is not None:
        notes.append(f"CSS {css!r}: a role, label or test id survives a redesign better")
    return locator, "; ".join(notes) or None


def _strategy(link: _Call, values: _Values) -> dict[str, Any]:
    """Return the strategy of one locator call: role and name, label, text, test id, css."""
    key = LOCATOR_CALLS[link.name]
    unknown = set(link.kwargs) - {"name", "exact", "has_text"}
    if unknown:
        raise RecordingError(f"{link.name} with {', '.join(sorted(unknown))} has no flow form")
    first = link.args[0] if link.args else None
    if not isinstance(first, str):
        raise RecordingError(f"{link.name} with a regular expression has no flow form")
    found: dict[str, Any] = {key: first if key in ("role", "css") else values.text(first)}
    name = link.kwargs.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise RecordingError("a role's name as a regular expression has no flow form")
        found["name"] = values.text(name)
    if link.kwargs.get("exact"):
        found["exact"] = True
    if key == "css" and isinstance(link.kwargs.get("has_text"), str):
        found["has_text"] = values.text(link.kwargs["has_text"])
    return found


def _describe(locator: dict[str, Any]) -> str:
    """Return a short human name of a locator for a step's name."""
    if "role" in locator:
        name = locator.get("name")
        return f"the {name} {locator['role']}" if name else f"the {locator['role']}"
    for key in ("label", "placeholder", "text"):
        if key in locator:
            return f"{locator[key]}"
    if "test_id" in locator:
        return "the " + re.sub(r"[-_]+", " ", locator["test_id"])
    return f"{locator.get('css', 'the element')}"


def _tidy(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop codegen's noise: a click that only focuses the field the next step fills."""
    tidy: list[dict[str, Any]] = []
    for index, step in enumerate(steps):
        following = steps[index + 1] if index + 1 < len(steps) else None
        if following is not None and "click" in step:
            target = following.get("fill") or following.get("totp") or following.get("press")
            if target == step["click"]:
                continue
        tidy.append(step)
    return tidy


def _refuse_secrets(steps: list[dict[str, Any]], secrets: Mapping[str, str]) -> None:
    """Refuse a flow that would hold a secret's value anywhere, in any step field."""
    text = yaml.safe_dump(steps, allow_unicode=True)
    for name, value in secrets.items():
        if len(value) >= RECORDER_MIN_SECRET_LEN and value in text:
            raise RecordingError(
                f"the recording holds the value of secret {name!r} outside a fill of it "
                "(a URL, a text to expect...): refusing to write it into a flow file"
            )


def _dump(document: dict[str, Any], recorded: list[_Recorded]) -> str:
    """Return the flow as YAML with the schema line, a review note above flagged steps."""
    head = {k: v for k, v in document.items() if k != "steps"}
    lines = [
        "# yaml-language-server: $schema=../flow.schema.json",
        yaml.safe_dump(head, sort_keys=False, allow_unicode=True, width=100).rstrip(),
        "steps:",
    ]
    flagged = {id(r.step): r.note for r in recorded if r.note}
    for step in document["steps"]:
        note = flagged.get(id(step))
        if note:
            lines.append(f"  # review: {note}")
        lines += [f"  {line}" for line in _step_lines(step)]
    return "\n".join(lines) + "\n"


def _step_lines(step: dict[str, Any]) -> list[str]:
    """Return a step as a YAML list item: one field per line, a locator on one line."""
    lines: list[str] = []
    for index, (key, value) in enumerate(step.items()):
        flow = None if isinstance(value, dict | list) else False
        text = yaml.safe_dump(
            {key: value}, sort_keys=False, allow_unicode=True, width=100, default_flow_style=flow
        )
        first, *rest = text.rstrip().splitlines()
        lines += [("- " if index == 0 else "  ") + first, *(f"  {line}" for line in rest)]
    return lines


async def integration_secrets(
    session: AsyncSession, vault: Vault, integration_id: str, app: str
) -> dict[str, str]:
    """Return an integration's secrets: what an import names and refuses to write."""
    integration = await get_integration(session, integration_id)
    if integration.app != app:
        raise RecordingError(f"integration {integration_id} is for {integration.app}, not {app}")
    return await vault.secrets_of(session, integration_id)
