"""SCIM filters as SQL conditions and pages, so that IdP look-ups stay indexed at any size."""

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, Union, cast

from scim2_models import (
    Resource,
    ResourceType,
    ResponseParameters,
    ScimFilter,
    ScimProvider,
    SearchRequest,
)
from scim2_models.path import (
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Path,
)
from scim2_server.storage import SearchPage
from scim2_server.utils import parametrize
from sqlalchemy import ColumnElement, false
from sqlmodel import col, select

from engine.scim.columns import (
    CATALOGUE,
    GROUP,
    SCHEMA_KINDS,
    USER,
    fold,
    kind_of,
    model_of,
    storable,
)
from engine.storage.models import Identity, Membership, ScimGroup

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""When the catalogue entries, which have no row, count as created: before any resource."""

SqlConditions = list[ColumnElement[bool]]


class Source(Protocol):
    """What a search reads through the storage: the live resources of a kind, in SQL.

    A search whose filter is wholly `eq` terms on indexed columns is counted and paged in SQL;
    any other loads its candidates for scim2-models' filter evaluator to match, sort and page.
    """

    provider: ScimProvider

    async def count(self, kind: str, conditions: SqlConditions) -> int:
        """Return how many live rows of a kind meet the conditions."""
        ...

    async def load(
        self,
        resource_type: ResourceType,
        conditions: SqlConditions,
        *,
        with_members: bool,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Resource[Any]]:
        """Return the live resources of a type meeting the conditions, oldest first."""
        ...


def conjuncts(node: FilterNode) -> tuple[FilterNode, ...]:
    """Return the terms a filter requires all of: itself, unless it is an `and`."""
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_:
        return tuple(term for each in node.terms for term in conjuncts(each))
    return (node,)


def mentions_members(node: FilterNode | None) -> bool:
    """Tell whether a filter reads `members`, so that the groups it tests need theirs."""
    if node is None:
        return False
    if isinstance(node, LogicalExpr):
        return any(mentions_members(term) for term in node.terms)
    if isinstance(node, Not):
        return mentions_members(node.expr)
    attr_path = getattr(node, "attr_path", None)
    return attr_path is not None and attr_path.attr.casefold() == "members"


def names_members(path: Path[Any]) -> bool:
    """Tell whether an attribute path designates a Group's `members` or one of its parts."""
    schema = path.schema
    in_group = schema is None or SCHEMA_KINDS.get(schema.casefold()) == GROUP
    return in_group and bool(path.parts) and path.parts[0].casefold() == "members"


def may_name_members(path: Path[Any]) -> bool:
    """Tell whether a path may keep `members`: one under another schema URN is not ruled out."""
    schema = path.schema
    foreign = schema is not None and SCHEMA_KINDS.get(schema.casefold()) != GROUP
    return foreign or names_members(path)


def wants_members(parameters: ResponseParameters[Any] | None) -> bool:
    """Tell whether a response keeps `members`, so that loading thousands can be skipped."""
    if parameters is None:
        return True
    if parameters.attributes:
        return any(may_name_members(path) for path in parameters.attributes)
    excluded = parameters.excluded_attributes or ()
    return not any(names_members(path) and len(path.parts) == 1 for path in excluded)


def created_then_id(resource: Resource[Any]) -> tuple[Any, str]:
    """Return the default order of search results: oldest first, ties by id."""
    assert resource.meta is not None
    return resource.meta.created or EPOCH, cast(str, resource.id)


def page_of(found: list[Resource[Any]], search_request: SearchRequest[Any]) -> SearchPage:
    """Return the startIndex/count slice of every match, with their number."""
    start = search_request.start_index_0 or 0
    return SearchPage(total=len(found), resources=found[start : search_request.stop_index_0])


def bound_filter(
    scim_filter: ScimFilter[Any] | None,
    resource_types: list[ResourceType],
    model: Callable[[ResourceType], type[Resource[Any]]],
) -> ScimFilter[Any] | None:
    """Return the filter bound to the searched models, as the evaluator needs."""
    if scim_filter is None or scim_filter.models:
        return scim_filter
    models = tuple(model(rt) for rt in resource_types)
    return parametrize(ScimFilter, Union[models])(str(scim_filter))  # noqa: UP007


def has_member(member_id: str) -> ColumnElement[bool]:
    """Return the SQL of `members eq "<id>"`: an indexed Membership look-up."""
    return (
        select(Membership.member_id)
        .where(
            col(Membership.group_id) == col(ScimGroup.id),
            col(Membership.member_id) == member_id,
        )
        .exists()
    )


def column_equals(
    kind: str, field_name: str, case_exact: bool, value: str
) -> ColumnElement[bool] | None:
    """Compare an indexed column to a value, when the column keeps the attribute's case rule."""
    exact = {
        (USER, "id"): col(Identity.id),
        (USER, "external_id"): col(Identity.external_id),
        (GROUP, "id"): col(ScimGroup.id),
        (GROUP, "external_id"): col(ScimGroup.external_id),
    }
    folded = {
        (USER, "user_name"): col(Identity.user_name_key),
        (GROUP, "display_name"): col(ScimGroup.display_name_key),
    }
    column = (exact if case_exact else folded).get((kind, field_name))
    if column is None:
        return None
    return column == (value if case_exact else fold(value))


def indexed_condition(
    kind: str, scim_filter: ScimFilter[Any], node: FilterNode
) -> ColumnElement[bool] | None:
    """Return the SQL of an `eq` on an indexed attribute, or None for the evaluator."""
    if not isinstance(node, Comparison) or node.op != CompareOperator.eq:
        return None
    if not isinstance(node.value, str):
        return None
    if not storable(node.value):
        return false()
    binding = scim_filter.resolve_comparison(node.attr_path, strict=False)
    if binding is None or binding.model is not scim_filter.model:
        return None
    if kind == GROUP and (binding.field_name, binding.sub_field_name) == ("members", "value"):
        return has_member(node.value)
    if binding.sub_field_name is not None:
        return None
    return column_equals(kind, binding.field_name, binding.case_exact, node.value)


def indexed_conditions(
    kind: str, scim_filter: ScimFilter[Any] | None
) -> tuple[SqlConditions, bool]:
    """Return the SQL for the indexed `eq` terms of a filter, and whether they are all of it."""
    if scim_filter is None:
        return [], True
    if scim_filter.model is None:
        return [], False
    terms = conjuncts(scim_filter.ast)
    conditions = [indexed_condition(kind, scim_filter, term) for term in terms]
    indexed = [condition for condition in conditions if condition is not None]
    return indexed, len(indexed) == len(terms)


async def indexed_page(
    source: Source,
    resource_type: ResourceType,
    conditions: SqlConditions,
    search_request: SearchRequest[Any],
) -> SearchPage:
    """Count and page the matches in SQL, oldest first.

    A first page shorter than asked holds every match: its length is the total, with no
    count query (an IdP's look-up by userName finds one user or none).
    """
    start = search_request.start_index_0 or 0
    limit = search_request.count
    if start == 0 and limit != 0:
        resources = await _load_page(source, resource_type, conditions, search_request, 0)
        if limit is None or len(resources) < limit:
            return SearchPage(total=len(resources), resources=resources)
        return SearchPage(
            total=await source.count(kind_of(resource_type), conditions), resources=resources
        )
    total = await source.count(kind_of(resource_type), conditions)
    if limit == 0 or start >= total:
        return SearchPage(total=total, resources=[])
    resources = await _load_page(source, resource_type, conditions, search_request, start)
    return SearchPage(total=total, resources=resources)


async def _load_page(
    source: Source,
    resource_type: ResourceType,
    conditions: SqlConditions,
    search_request: SearchRequest[Any],
    start: int,
) -> list[Resource[Any]]:
    """Load one page of the matches from a position."""
    return await source.load(
        resource_type,
        conditions,
        with_members=wants_members(search_request),
        offset=start,
        limit=search_request.count,
    )


async def scanned_page(
    source: Source,
    resource_types: list[ResourceType],
    conditions: SqlConditions,
    scim_filter: ScimFilter[Any] | None,
    search_request: SearchRequest[Any],
) -> SearchPage:
    """Load the candidates, keep those the filter evaluator matches, then sort and page them."""
    with_members = (
        wants_members(search_request)
        or mentions_members(scim_filter.ast if scim_filter is not None else None)
        or (search_request.sort_by is not None and names_members(search_request.sort_by))
    )
    loaded: list[Resource[Any]] = []
    for resource_type in resource_types:
        loaded += await source.load(resource_type, conditions, with_members=with_members)
    loaded.sort(key=created_then_id)
    found = [r for r in loaded if scim_filter is None or scim_filter.match(r)]
    return page_of(search_request.sort(found), search_request)


async def search_page(
    source: Source, resource_types: list[ResourceType], search_request: SearchRequest[Any]
) -> SearchPage:
    """Return a page of matches: in SQL for IdP look-ups, by the filter evaluator otherwise."""
    resource_types = list({rt.name: rt for rt in resource_types}.values())
    model = partial(model_of, source.provider)
    scim_filter = bound_filter(search_request.filter, resource_types, model)
    if len(resource_types) != 1 or kind_of(resource_types[0]) == CATALOGUE:
        return await scanned_page(source, resource_types, [], scim_filter, search_request)
    kind = kind_of(resource_types[0])
    conditions, complete = indexed_conditions(kind, scim_filter)
    if complete and search_request.sort_by is None:
        return await indexed_page(source, resource_types[0], conditions, search_request)
    return await scanned_page(source, resource_types, conditions, scim_filter, search_request)
