"""What Okta and Entra send outside RFC 7643/7644, rewritten into what scim2-models reads.

Pure functions over a request's decoded JSON, applied by the SCIM route before scim2-server's
handler sees the request. scim2-models already lower-cases `op`, reads "True"/"False" as
booleans, takes dotted and URN-qualified keys in a path-less value and ignores an `id` that
matches; the provider's `ScimPolicy` makes it remove members by value list, create the entry
an unmatched filtered path names, and keep unknown attributes. What is left is done here:

- an empty string or null means "unset": dropped from a body, a `remove` in a PATCH; an
  unset sub-attribute of an add/replace object is its own `remove`, as PATCH merges objects;
- Entra's `manager` as a bare id becomes `{"value": id}`;
- Okta's `roles: ["a", "b"]` become `[{"value": "a"}, {"value": "b"}]`;
- Entra's role whose `value` is a JSON object in a string is unwrapped;
- `schemas` lists the extensions a body carries, and no URN it carries no data for;
- a filter with a bare value (`externalId eq jyoung`) gets its value quoted.

Of a URN no schema of Usher's declares, a capitalised last segment (`...:2.0:User`) names a
schema, any other an attribute of one.
"""

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from scim2_models import SCIMException, ScimFilter
from scim2_server.routing import Operation, match

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
KINDS = {"users": ("User", USER_SCHEMA), "groups": ("Group", GROUP_SCHEMA)}
"""The resource kind and core schema served at each endpoint, by case-folded endpoint."""

SCHEMA_PATHS = frozenset(s.casefold() for s in (USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_SCHEMA))
VALUE_LISTS = frozenset({"roles", "entitlements"})
"""Multi-valued attributes Okta may send as an array of strings."""

ENTERPRISE = ENTERPRISE_SCHEMA.casefold()
MANAGER = f"{ENTERPRISE}:manager"
WRITES = {Operation.create: "resource", Operation.replace: "resource", Operation.patch: "patch"}

BARE_VALUE = re.compile(
    r"(?i)(\b(?:eq|ne|co|sw|ew|gt|ge|lt|le)\s+)(?!(?:true|false|null)(?![^\s()\[\]]))"
    r"([^\s()\[\]\"]+)"
)
QUOTED = re.compile(r'("(?:[^"\\]|\\.)*")')


def is_unset(value: Any) -> bool:
    """Tell whether a value means "no value": null, "", or an object of unset members only."""
    if value is None or value == "":
        return True
    return isinstance(value, dict) and bool(value) and all(map(is_unset, value.values()))


def without_unset(value: Any) -> Any:
    """Drop the unset members of objects and arrays, at every depth."""
    if isinstance(value, dict):
        return {k: without_unset(item) for k, item in value.items() if not is_unset(item)}
    if isinstance(value, list):
        return [without_unset(item) for item in value if not is_unset(item)]
    return value


def find_key(data: Mapping[str, Any], name: str) -> str | None:
    """Return the key of an object matching a name whatever its case (RFC 7643 §2.1)."""
    folded = name.casefold()
    return next((k for k in data if isinstance(k, str) and k.casefold() == folded), None)


def attribute_key(path: str) -> str:
    """Return a path case-folded, without the core User schema, as the targets are named."""
    folded = path.casefold()
    core = f"{USER_SCHEMA.casefold()}:"
    return folded[len(core) :] if folded.startswith(core) else folded


def names_schema(path: str) -> bool:
    """Tell whether a URN names a schema: a known one, or one ending in a capitalised resource."""
    folded = path.casefold()
    if folded in SCHEMA_PATHS:
        return True
    if not folded.startswith("urn:") or any(folded.startswith(f"{s}:") for s in SCHEMA_PATHS):
        return False
    last = path.rpartition(":")[2]
    return last[:1].isupper() and "." not in last


def child_path(path: str, name: str) -> str:
    """Return the path of a sub-attribute: `schema:attr` under a schema, `attr.sub` otherwise."""
    return f"{path}{':' if names_schema(path) else '.'}{name}"


def manager(value: Any) -> Any:
    """Return Entra's bare manager id as the RFC's complex manager."""
    return {"value": value} if isinstance(value, str) else value


def unwrapped_role(entry: dict[str, Any]) -> dict[str, Any]:
    """Return a role whose `value` is a JSON object in a string as that object's value."""
    key = find_key(entry, "value")
    raw = entry.get(key) if key is not None else None
    if not isinstance(raw, str) or not raw.lstrip().startswith("{"):
        return entry
    try:
        inner = json.loads(raw)
    except ValueError:
        return entry
    if not isinstance(inner, dict):
        return entry
    value = next((inner[k] for k in ("value", "id") if isinstance(inner.get(k), str | int)), None)
    if value is None:
        return entry
    role = {k: v for k, v in entry.items() if k != key}
    role["value"] = str(value)
    display = inner.get("displayName")
    if isinstance(display, str) and display and find_key(role, "display") is None:
        role["display"] = display
    return role


def value_list(value: Any) -> Any:
    """Return roles or entitlements as RFC objects: strings wrapped, JSON-string values opened."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return value
    entries = [{"value": item} if isinstance(item, str) else item for item in items]
    return [unwrapped_role(e) if isinstance(e, dict) else e for e in entries]


def enterprise(value: Any) -> Any:
    """Return the enterprise extension object with its manager in the RFC's shape."""
    if not isinstance(value, dict):
        return value
    return {k: manager(v) if k.casefold() == "manager" else v for k, v in value.items()}


def user_value(path: str, value: Any) -> Any:
    """Return the value written at a User path in the shape scim2-models reads."""
    target = attribute_key(path)
    if target in VALUE_LISTS:
        return value_list(value)
    if target == MANAGER:
        return manager(value)
    if target == ENTERPRISE:
        return enterprise(value)
    return value


def fixer(kind: str) -> Callable[[str, Any], Any]:
    """Return what reshapes a value at a path for a kind of resource."""
    return user_value if kind == "User" else lambda _path, value: value


def declared_schemas(core: str, resource: dict[str, Any]) -> dict[str, Any]:
    """Make `schemas` list the extensions a body carries, only those; leave a wrong body alone."""
    key = find_key(resource, "schemas")
    schemas = resource.get(key) if key is not None else None
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        return resource
    if core.casefold() not in {s.casefold() for s in schemas}:
        return resource
    carried = [
        k for k in resource if k.casefold().startswith("urn:") and isinstance(resource[k], dict)
    ]
    present = {k.casefold() for k in carried}
    kept = [s for s in schemas if s.casefold() == core.casefold() or s.casefold() in present]
    listed = {s.casefold() for s in kept}
    kept += [k for k in carried if k.casefold() not in listed]
    return {**resource, key: kept}


def normalise_resource(kind: str, payload: Any) -> Any:
    """Rewrite a POST or PUT body: unset values dropped, manager and role shapes fixed."""
    if not isinstance(payload, dict):
        return payload
    reshape = fixer(kind)
    resource = {k: reshape(k, v) for k, v in without_unset(payload).items()}
    core = USER_SCHEMA if kind == "User" else GROUP_SCHEMA
    return declared_schemas(core, resource)


def removal(path: str) -> dict[str, Any]:
    """Return the PATCH operation that unsets a path."""
    return {"op": "remove", "path": path}


def split_object(
    kind: str, path: str | None, value: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Split an add/replace object into what it sets and what it unsets: PATCH merges objects."""
    reshape = fixer(kind)
    kept: dict[str, Any] = {}
    removals: list[dict[str, Any]] = []
    for name, item in value.items():
        target = name if path is None else child_path(path, name)
        if is_unset(item):
            removals.append(removal(target))
            continue
        if isinstance(item, dict) and path is None:
            inner, unset = split_object(kind, name, item)
            removals += unset
            if not inner:
                continue
            item = inner
        kept[name] = reshape(target, without_unset(item))
    return kept, removals


def normalise_operation(kind: str, operation: Any) -> list[Any]:
    """Rewrite one PATCH operation into the operations scim2-models applies the same way."""
    if not isinstance(operation, dict):
        return [operation]
    keys = {name: find_key(operation, name) for name in ("op", "path", "value")}
    verb, path_key, value_key = keys["op"], keys["path"], keys["value"]
    op = operation.get(verb) if verb is not None else None
    path = operation.get(path_key) if path_key is not None else None
    if not isinstance(op, str) or not (path is None or isinstance(path, str)):
        return [operation]
    if value_key is None:
        return [operation]
    value = operation[value_key]
    if op.casefold() == "remove":
        reshaped = fixer(kind)(path, value) if path is not None else value
        return [operation if reshaped == value else {**operation, value_key: reshaped}]
    if op.casefold() not in ("add", "replace"):
        return [operation]
    if path is not None and is_unset(value):
        return [removal(path)]
    if not isinstance(value, dict):
        reshaped = fixer(kind)(path, without_unset(value)) if path is not None else value
        return [{**operation, value_key: reshaped}]
    if not value:
        return [operation]
    kept, removals = split_object(kind, path, value)
    if path is not None:
        kept = fixer(kind)(path, kept)
    rewritten = ([{**operation, value_key: kept}] if kept else []) + removals
    return rewritten or [operation]


def normalise_patch(kind: str, payload: Any) -> Any:
    """Rewrite each operation of a PatchOp body."""
    if not isinstance(payload, dict):
        return payload
    key = find_key(payload, "Operations")
    operations = payload.get(key) if key is not None else None
    if not isinstance(operations, list):
        return payload
    rewritten = [new for operation in operations for new in normalise_operation(kind, operation)]
    return {**payload, key: rewritten}


def request_kind(method: str, path: str) -> tuple[str, str] | None:
    """Return the resource kind and the body kind of a write on Users or Groups, else None."""
    try:
        target = match(method.upper(), path)
    except SCIMException:
        return None
    body = WRITES.get(target.operation)
    kind = KINDS.get((target.endpoint or "").casefold())
    if body is None or kind is None or target.me:
        return None
    return kind[0], body


def normalise_body(method: str, path: str, body: bytes) -> bytes:
    """Rewrite a request body's dialect; anything that is not JSON is left to scim2-server."""
    kinds = request_kind(method, path)
    if kinds is None or not body:
        return body
    kind, shape = kinds
    try:
        payload = json.loads(body)
        rewrite = normalise_patch if shape == "patch" else normalise_resource
        normalised = rewrite(kind, payload)
        return body if normalised == payload else json.dumps(normalised).encode()
    except (ValueError, RecursionError):
        return body


def quoted_bare_values(text: str) -> str:
    """Quote the bare values after comparison operators, outside quoted strings."""
    parts = QUOTED.split(text)
    return "".join(
        part if index % 2 else BARE_VALUE.sub(r'\1"\2"', part) for index, part in enumerate(parts)
    )


def parses(text: str) -> bool:
    """Tell whether a filter is valid SCIM syntax, whatever attributes it names."""
    try:
        ScimFilter(text)
    except (SCIMException, ValueError, RecursionError):
        return False
    return True


def normalise_filter(text: str) -> str:
    """Return a filter with its bare values quoted, when only that keeps it from parsing."""
    if parses(text):
        return text
    lenient = quoted_bare_values(text)
    return lenient if lenient != text and parses(lenient) else text


def normalise_query(query: Mapping[str, str]) -> dict[str, str]:
    """Return the query parameters with a lenient filter."""
    normalised = dict(query)
    if "filter" in normalised:
        normalised["filter"] = normalise_filter(normalised["filter"])
    return normalised
