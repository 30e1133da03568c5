"""Property tests: no input to the dialect normaliser or to filter handling makes a 500."""

import json
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.scim.dialect import (
    normalise_body,
    normalise_filter,
    normalise_patch,
    normalise_query,
    normalise_resource,
)
from tests.scim.conftest import ENTERPRISE, ERROR_SCHEMA, PATCH_SCHEMA, USER_SCHEMA, Scim

ATTRIBUTES = [
    "userName", "active", "title", "name", "name.givenName", "emails", "roles", "entitlements",
    "members", "displayName", "externalId", "id", "groups", "password", "nickName",
    f"{ENTERPRISE}:manager", f"{ENTERPRISE}:employeeNumber", ENTERPRISE,
    f"{USER_SCHEMA}:roles", "urn:example:custom:2.0:User:floor", "urn:example:custom:2.0:User",
    'emails[type eq "work"].value', 'members[value eq "x"]', "roles[primary eq true].value",
]  # fmt: skip
"""Paths and keys an IdP writes, so that examples reach the normaliser's rewrites."""

ROLE_STRING = '{"id":"1","value":"25","displayName":"R"}'
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "True", "False", "x", ROLE_STRING, "{not json"]),
    st.text(max_size=12),
)
keys = st.one_of(
    st.sampled_from([*ATTRIBUTES, "value", "display", "type", "op", "path"]), st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
verbs = st.one_of(
    st.sampled_from(["add", "Add", "replace", "Replace", "remove", "Remove", "move"]),
    st.text(max_size=6),
)
paths = st.one_of(st.none(), st.sampled_from(ATTRIBUTES), st.text(max_size=20))
operations = st.one_of(
    st.fixed_dictionaries({"op": verbs}, optional={"path": paths, "value": json_values}),
    json_values,
)
patch_bodies = st.one_of(
    st.fixed_dictionaries(
        {"schemas": st.just([PATCH_SCHEMA]), "Operations": st.lists(operations, max_size=4)}
    ),
    json_values,
)
resource_bodies = st.one_of(
    st.fixed_dictionaries(
        {"schemas": st.just([USER_SCHEMA]), "userName": st.text(min_size=1, max_size=20)},
        optional={
            k: json_values for k in ("name", "emails", "roles", ENTERPRISE, "active", "title")
        },
    ),
    json_values,
)
comparisons = st.sampled_from(
    ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr", "Eq", "xx"]
)
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
filter_values = st.one_of(
    st.text(max_size=10).map(json.dumps),
    st.text(surrogates, min_size=1, max_size=2).map(json.dumps),
    st.sampled_from(["true", "false", "null", "12", "bare", "2026-01-01T00:00:00Z"]),
    st.text(max_size=6),
)
terms = st.builds(
    lambda attribute, op, value: f"{attribute} {op} {value}".strip(),
    st.one_of(st.sampled_from([*ATTRIBUTES, "meta.created", "badAttr"]), st.text(max_size=8)),
    comparisons,
    filter_values,
)
filters = st.one_of(
    st.recursive(
        terms,
        lambda inner: st.one_of(
            st.builds(lambda a, b: f"{a} and {b}", inner, inner),
            st.builds(lambda a, b: f"{a} or {b}", inner, inner),
            st.builds(lambda a: f"not ({a})", inner),
            st.builds(lambda a: f"({a}", inner),
        ),
        max_leaves=4,
    ),
    st.text(max_size=30),
)
HTTP = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def dumps(value: Any) -> bytes:
    """Return a value as a JSON body."""
    return json.dumps(value).encode()


@given(json_values)
def test_normalising_any_json_never_raises_and_is_stable(payload: Any) -> None:
    """Any JSON, as a resource or a PATCH of either kind: a JSON answer, the same when redone."""
    for kind in ("User", "Group"):
        for normalise in (normalise_resource, normalise_patch):
            once = normalise(kind, payload)
            json.dumps(once)
            assert normalise(kind, once) == once


@given(patch_bodies)
def test_normalising_patches_is_stable(payload: Any) -> None:
    """A PATCH body rewritten once is not rewritten again."""
    once = normalise_patch("User", payload)
    assert normalise_patch("User", once) == once


@given(st.binary(max_size=64) | json_values.map(dumps), st.sampled_from(["POST", "PUT", "PATCH"]))
def test_normalising_any_body_never_raises(body: bytes, method: str) -> None:
    """Any bytes, on any write endpoint: bytes back, and JSON stays JSON."""
    for path in ("/Users", "/Users/1", "/Groups/1", "/Schemas", "/Me", "/nowhere/x/y"):
        normalised = normalise_body(method, path, body)
        assert isinstance(normalised, bytes)
        if normalised != body:
            json.loads(normalised)


@given(filters)
def test_normalising_any_filter_never_raises(text: str) -> None:
    """Any filter comes back as text; one that already parses comes back unchanged."""
    normalised = normalise_filter(text)
    assert isinstance(normalised, str)
    assert normalise_filter(normalised) == normalised
    assert normalise_query({"filter": text, "count": "1"})["count"] == "1"


def assert_handled(response: Any) -> None:
    """Check a response is not a server error, and is a SCIM error when it is an error."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["schemas"] == [ERROR_SCHEMA]


@settings(HTTP)
@given(patch_bodies)
def test_no_patch_makes_a_500(scim: Scim, body: Any) -> None:
    """Random PATCH bodies on a live user: a success or a SCIM 4xx, never a 500."""
    user = scim.ok("GET", "/Users", params={"filter": 'userName eq "patched@example.com"'})
    target = user["Resources"][0]["id"] if user["totalResults"] else None
    if target is None:
        target = scim.user("patched@example.com")["id"]
    assert_handled(scim.call("PATCH", f"/Users/{target}", content=dumps(body)))


@settings(HTTP)
@given(resource_bodies, st.sampled_from(["/Users", "/Groups"]))
def test_no_create_makes_a_500(scim: Scim, body: Any, endpoint: str) -> None:
    """Random POST bodies: created or refused with a SCIM 4xx, never a 500."""
    assert_handled(scim.call("POST", endpoint, content=dumps(body)))


@settings(HTTP)
@given(filters, st.sampled_from(["/Users", "/Groups", "/Entitlements", "/"]))
@example('userName eq "\\ud800"', "/Users")
@example('id eq "\\udfff" and externalId eq "x"', "/Groups")
def test_no_filter_makes_a_500(scim: Scim, text: str, endpoint: str) -> None:
    """Random filters on every searchable endpoint: a list or a 400, never a 500."""
    response = scim.call("GET", endpoint, params={"filter": text})
    assert_handled(response)
    if response.status_code >= 400:
        assert response.status_code in (400, 403)


@settings(HTTP)
@given(st.binary(min_size=1, max_size=12), st.sampled_from(["GET", "DELETE", "PUT", "PATCH"]))
def test_no_resource_id_makes_a_500(scim: Scim, raw_id: bytes, method: str) -> None:
    """Any bytes as a resource id, percent-encoded in the URL: a SCIM 4xx, never a 500."""
    body = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "title", "value": "x"}]}
    for endpoint in ("/Users", "/Groups", "/Roles"):
        assert_handled(scim.call(method, f"{endpoint}/{quote(raw_id, safe='')}", body))
