"""Discovery tells the truth: what is supported, every resource type's schemas, the catalogue."""

import re
from typing import Any

from engine.apps.template import load_app
from tests.harness import ROOT
from tests.scim.conftest import (
    ENTERPRISE,
    ERROR_SCHEMA,
    GROUP_SCHEMA,
    LIST_SCHEMA,
    SCIM_JSON,
    USER_SCHEMA,
    Scim,
)

OKTA_ENTITLEMENT = "urn:okta:scim:schemas:core:1.0:Entitlement"
OKTA_ROLE = "urn:okta:scim:schemas:core:1.0:Role"
CAMEL_CASE = re.compile(r"^(\$ref|[a-z][A-Za-z0-9]*|urn:[^ ]+|Resources)$")

ACME_EXTENSION = "urn:usher:params:scim:schemas:extension:acme:2.0:User"


def keys_and_values(value: Any) -> list[tuple[str, Any]]:
    """Return every key of a JSON value with its value, at every depth."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in [(k, v), *keys_and_values(v)]]
    if isinstance(value, list):
        return [pair for item in value for pair in keys_and_values(item)]
    return []


def test_service_provider_config_says_what_is_supported(scim: Scim) -> None:
    """PATCH, filters (200 max), ETags and bearer tokens yes; bulk, sort, password change no."""
    anonymous = scim.client.get(f"{scim.url}/ServiceProviderConfig")
    config = scim.ok("GET", "/ServiceProviderConfig")

    assert anonymous.status_code == 200 and anonymous.json() == config
    assert config["patch"] == {"supported": True}
    assert config["filter"] == {"supported": True, "maxResults": 200}
    assert config["bulk"]["supported"] is False
    assert config["sort"] == {"supported": False}
    assert config["changePassword"] == {"supported": False}
    assert config["etag"] == {"supported": True}
    (scheme,) = config["authenticationSchemes"]
    assert scheme["type"] == "oauthbearertoken" and scheme["primary"] is True


def test_resource_types_and_schemas_are_consistent(scim: Scim) -> None:
    """Every schema a resource type names, extensions included, is served by /Schemas."""
    types = scim.ok("GET", "/ResourceTypes")
    schemas = scim.ok("GET", "/Schemas")

    assert types["schemas"] == schemas["schemas"] == [LIST_SCHEMA]
    by_id = {t["id"]: t for t in types["Resources"]}
    assert {k: (t["endpoint"], t["schema"]) for k, t in by_id.items()} == {
        "User": ("/Users", USER_SCHEMA),
        "Group": ("/Groups", GROUP_SCHEMA),
        "Entitlement": ("/Entitlements", OKTA_ENTITLEMENT),
        "Role": ("/Roles", OKTA_ROLE),
    }
    assert by_id["User"]["schemaExtensions"] == [
        {"schema": ENTERPRISE, "required": False},
        {"schema": ACME_EXTENSION, "required": False},
    ]
    served = {s["id"] for s in schemas["Resources"]}
    named = {t["schema"] for t in types["Resources"]}
    named |= {e["schema"] for t in types["Resources"] for e in t.get("schemaExtensions", [])}
    assert named <= served
    for resource_type in types["Resources"]:
        assert scim.ok("GET", f"/ResourceTypes/{resource_type['id']}")["id"] == resource_type["id"]
    for schema in schemas["Resources"]:
        assert scim.ok("GET", f"/Schemas/{schema['id']}")["id"] == schema["id"]


def test_the_apps_own_extension_is_published(scim: Scim) -> None:
    """Acme's template declares costCenter under its URN: /Schemas describes it."""
    schema = scim.ok("GET", f"/Schemas/{ACME_EXTENSION}")
    assert schema["name"] == "AcmeUser"
    (cost,) = schema["attributes"]
    assert (cost["name"], cost["type"], cost["multiValued"]) == ("costCenter", "string", False)
    assert cost["mutability"] == "readWrite" and cost["returned"] == "default"


def test_schemas_send_no_nulls_and_camel_case_names(scim: Scim) -> None:
    """Entra reads /Schemas strictly: no null anywhere, camelCase property names."""
    schemas = scim.ok("GET", "/Schemas")

    pairs = keys_and_values(schemas)
    assert [k for k, v in pairs if v is None] == []
    assert [k for k, _ in pairs if not CAMEL_CASE.match(k)] == []
    user = next(s for s in schemas["Resources"] if s["id"] == USER_SCHEMA)
    attributes = {a["name"]: a for a in user["attributes"]}
    assert attributes["userName"]["uniqueness"] == "server"
    assert attributes["userName"]["caseExact"] is False
    assert attributes["password"]["returned"] == "never"
    assert {"roles", "entitlements", "emails", "active"} <= attributes.keys()


def test_discovery_refuses_unknown_ids_writes_and_filters(scim: Scim) -> None:
    """Unknown ids are 404, other methods 405, a filter 403: all SCIM errors."""
    for method, path, status in [
        ("GET", "/ResourceTypes/Printer", 404),
        ("GET", "/Schemas/urn:nope", 404),
        ("POST", "/Schemas", 405),
        ("DELETE", "/ResourceTypes/User", 405),
        ("PUT", "/ServiceProviderConfig", 405),
        ("GET", "/Nowhere", 404),
    ]:
        response = scim.call(method, path, {})
        assert response.status_code == status, (method, path, response.text)
        assert response.headers["content-type"].startswith(SCIM_JSON)
        assert response.json()["schemas"] == [ERROR_SCHEMA]
    filtered = scim.call("GET", "/Schemas", params={"filter": 'id eq "x"'})
    assert filtered.status_code == 403


def test_the_entitlement_catalogue_is_published_for_okta_governance(scim: Scim) -> None:
    """/Entitlements lists the app's multi entitlements, /Roles its exclusive ones, read-only."""
    template = load_app(ROOT / "flows", "acme")
    multi = [(e.value, e.label) for e in template.entitlements if e.kind == "multi"]
    exclusive = [(e.value, e.label) for e in template.entitlements if e.kind == "exclusive"]
    assert multi and exclusive

    entitlements = scim.ok("GET", "/Entitlements")
    roles = scim.ok("GET", "/Roles")

    assert sorted((e["id"], e["displayName"]) for e in entitlements["Resources"]) == sorted(multi)
    assert sorted((r["id"], r["displayName"]) for r in roles["Resources"]) == sorted(exclusive)
    assert {tuple(e["schemas"]) for e in entitlements["Resources"]} == {(OKTA_ENTITLEMENT,)}
    assert {e["type"] for e in entitlements["Resources"]} == {"Entitlement"}
    value, label = exclusive[0]
    assert scim.ok("GET", f"/Roles/{value}")["displayName"] == label
    found = scim.ok("GET", "/Entitlements", params={"filter": f'displayName eq "{multi[0][1]}"'})
    assert [e["id"] for e in found["Resources"]] == [multi[0][0]]
    assert scim.call("GET", f"/Entitlements/{value}").status_code == 404
    for method, path in [
        ("POST", "/Roles"),
        ("PUT", f"/Roles/{value}"),
        ("DELETE", f"/Roles/{value}"),
    ]:
        refused = scim.call(method, path, {"schemas": [OKTA_ROLE], "displayName": "Root"})
        assert refused.status_code == 405, refused.text
        assert refused.json()["schemas"] == [ERROR_SCHEMA] and "GET" in refused.headers["allow"]
    assert scim.ok("GET", "/Roles")["totalResults"] == len(exclusive)


def test_a_user_carries_entitlements_and_roles_from_the_catalogue(scim: Scim) -> None:
    """Users hold catalogue values in `entitlements` and `roles`, stored and echoed."""
    user = scim.user(
        "holder@example.com",
        entitlements=[{"value": "editor", "display": "Editor", "type": "Entitlement"}],
        roles=[{"value": "plan-pro", "display": "Pro"}],
    )
    read = scim.ok("GET", f"/Users/{user['id']}")

    assert read["entitlements"] == [{"value": "editor", "display": "Editor", "type": "Entitlement"}]
    assert read["roles"] == [{"value": "plan-pro", "display": "Pro"}]
    held = scim.ok("GET", "/Users", params={"filter": 'roles.value eq "plan-pro"'})
    assert [u["id"] for u in held["Resources"]] == [user["id"]]
