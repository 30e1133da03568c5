"""The row helpers: folded keys, tombstones, bounded text, the JSON a row keeps."""

import json

import pytest
from scim2_models import InvalidValueException, NotFoundException, PreconditionFailedException

from engine.scim.columns import (
    MAX_TEXT,
    bounded,
    check_version,
    fold,
    tombstone,
    version_tag,
    without_empty_extensions,
)
from tests.scim.directory import Directory

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def test_a_folded_key_ignores_case_and_composition_and_never_equals_a_tombstone() -> None:
    """`É` composed or not folds to one key; no live key can look like a deleted row's."""
    assert fold("B\u00c9atrice") == fold("be\u0301atrice") == "b\u00e9atrice"
    assert fold(tombstone("abc")) != tombstone("abc")


def test_text_longer_than_its_column_and_stale_versions_are_refused() -> None:
    """A 501-character userName is a 400; an If-Match naming an older version a 412."""
    assert bounded("x" * MAX_TEXT, "userName") == "x" * MAX_TEXT
    with pytest.raises(InvalidValueException):
        bounded("x" * (MAX_TEXT + 1), "userName")
    check_version(3, version_tag(3))
    with pytest.raises(PreconditionFailedException):
        check_version(3, version_tag(2))


def test_an_empty_extension_is_dropped_with_its_schema() -> None:
    """An extension left with nothing but `schemas` is not stored, nor listed in `schemas`."""
    data = {"schemas": ["core", ENTERPRISE], ENTERPRISE: {"schemas": [ENTERPRISE]}, "a": 1}

    assert without_empty_extensions(data) == {"schemas": ["core"], "a": 1}


async def test_text_sql_cannot_hold_is_refused_or_matches_nothing(directory: Directory) -> None:
    """A NUL or a lone surrogate in an indexed column: 400 on write, no match on read."""
    await directory.user("plain")
    model = directory.provider.model_for(directory.group_type)

    for odd in ("nul\x00name", "half\ud800"):
        with pytest.raises(InvalidValueException):
            await directory.user(odd)
        with pytest.raises(InvalidValueException):
            await directory.user("other", external_id=odd)
        with pytest.raises(InvalidValueException):
            await directory.storage.create(
                directory.group_type,
                model.model_validate({"displayName": "g", "members": [{"value": odd}]}),
            )
        for attribute in ("userName", "externalId", "id"):
            assert (
                await directory.find(
                    directory.user_type, filter=f"{attribute} eq {json.dumps(odd)}"
                )
                == []
            )
        with pytest.raises(NotFoundException):
            await directory.storage.get(directory.user_type, odd)
        with pytest.raises(NotFoundException):
            await directory.storage.get(directory.group_type, odd)
    assert [u.user_name for u in await directory.find(directory.user_type)] == ["plain"]
    titled = await directory.user("titled", title="a\x00b")
    assert (await directory.storage.get(directory.user_type, titled.id)).title == "a\x00b"
