"""The operator API's tests share the operators of tests/operators.py."""

from tests.operators import admin, signed_in_client, viewer

__all__ = ["admin", "signed_in_client", "viewer"]
