"""SCIM list parameters, sorting, index and cursor paging (RFC 7644 §3.4.2, RFC 9865)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.models import Group, User
from app.scim.errors import ScimError
from app.scim.listing import ListPage, ListParams, list_response, parse_list_params, run_list
from app.scim.root_search import root_page

KEY = b"test-cursor-key"
TITLES = ["Engineer", "manager", None, "analyst", "Buyer"]


@pytest.fixture
def staff(db, tenant):
    """23 live users with tied creation times and missing titles, plus one deleted user."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    with db.transaction() as s:
        for i in range(23):
            s.add(User(id=f"{(i * 7919) % 1000:08d}-0000-4000-8000-{i:012d}",
                       directory_id=tenant.directory.id, organization_id=tenant.org.id,
                       user_name=f"{'Uu'[i % 2]}ser{i:02d}@acme.com", title=TITLES[i % 5],
                       active=i % 4 != 0, emails=[{"value": f"e{22 - i:02d}@acme.com"}],
                       primary_email=f"e{22 - i:02d}@acme.com",
                       created_at=start + timedelta(minutes=i // 3), updated_at=start))
        s.add(User(directory_id=tenant.directory.id, organization_id=tenant.org.id,
                   user_name="gone@acme.com", deleted_at=start, created_at=start,
                   updated_at=start))
    with db.transaction(readonly=True) as s:
        live = list(s.query(User).filter(User.deleted_at.is_(None)))
    return tenant, live


def base(tenant):
    """The directory a view passes (run_list adds: this directory, not deleted)."""
    return tenant.directory.id


def run(db, tenant, params: ListParams, max_results: int = 1000) -> ListPage:
    """Run one list query in its own read transaction."""
    with db.transaction(readonly=True) as s:
        return run_list(s, User, base(tenant), params, resource="User", dialect=db.dialect,
                        max_results=max_results, cursor_key=KEY)


def params(**kw) -> ListParams:
    """Parse query-string parameters the way a GET list does."""
    return parse_list_params(kw, from_body=False, default_count=100, max_count=10,
                             resource="User")


def names(page: ListPage) -> list[str]:
    """The userNames of a page, in order."""
    return [u.user_name for u in page.resources]


def expected(live, attr, descending=False) -> list[str]:
    """The RFC order computed in Python: by value, then by id; missing values "last if
    ascending and first if descending" (RFC 7644 §3.4.2.3)."""
    def value(u):
        v = getattr(u, attr)
        return v.lower() if isinstance(v, str) else v
    present = sorted((u for u in live if value(u) is not None),
                     key=lambda u: (value(u), u.id), reverse=descending)
    missing = sorted((u for u in live if value(u) is None), key=lambda u: u.id,
                     reverse=descending)
    return [u.user_name for u in (missing + present if descending else present + missing)]


QUERY_CASES = [
    ({}, {"start_index": 1, "count": 10, "sort_order": "ascending", "cursor": None}),
    ({"startIndex": "0", "count": "5"}, {"start_index": 1, "count": 5}),
    ({"startIndex": "-3"}, {"start_index": 1, "start_index_given": True}),
    ({"count": "-1"}, {"count": 0}),
    ({"count": "5000"}, {"count": 10}),
    ({"sortBy": "userName", "sortOrder": "Descending"},
     {"sort_by": "userName", "sort_order": "descending"}),
    ({"filter": "  "}, {"filter": None}),
    ({"attributes": "userName, emails", "excludedAttributes": "groups"},
     {"attributes": ("userName", "emails"), "excluded_attributes": ("groups",)}),
    ({"cursor": ""}, {"cursor": "", "start_index_given": False}),
]


@pytest.mark.parametrize(("query", "fields"), QUERY_CASES, ids=[str(q) for q, _ in QUERY_CASES])
def test_query_parameters_are_read_with_rfc_defaults(query, fields):
    """startIndex < 1 is 1, negative count is 0, count is capped (RFC 7644 §3.4.2.4)."""
    parsed = params(**query)
    for name, value in fields.items():
        assert getattr(parsed, name) == value


def test_search_request_body_is_read_with_json_types():
    """A SearchRequest body (RFC 7644 §3.4.3) carries integers and lists."""
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName sw "u"', "startIndex": 3, "count": 2,
            "attributes": ["userName"], "sortBy": "meta.created"}
    parsed = parse_list_params(body, from_body=True, default_count=100, max_count=10)
    assert (parsed.filter, parsed.start_index, parsed.count, parsed.attributes,
            parsed.sort_by) == ('userName sw "u"', 3, 2, ("userName",), "meta.created")


BAD_PARAMS = [
    ({"startIndex": "one"}, False),
    ({"count": "1.5"}, False),
    ({"count": True}, True),
    ({"startIndex": "²"}, False),
    ({"sortOrder": "up"}, False),
    ({"sortBy": "nosuch"}, False),
    ({"sortBy": "groups"}, False),
    ({"sortBy": "password"}, False),
    ({"attributes": [1, 2]}, True),
    ({"filter": 5}, True),
    ({"startIndex": "--5"}, False),
    ({"count": "9" * 5000}, False),  # past what int() reads
]


@pytest.mark.parametrize(("source", "from_body", "start", "count"), [
    ({"startIndex": 10**30, "count": 10**30}, True, 10**15, 10),
    ({"startIndex": "99999999999999999999", "count": "99999999999999999999"}, False,
     10**15, 10),
    ({"startIndex": "-" + "9" * 30, "count": "-" + "9" * 30}, False, 1, 0),
])
def test_huge_numbers_are_held_like_large_ones(source, from_body, start, count):
    """A huge count is capped at the page size and a huge startIndex is past the end, as
    any count above the maximum and any startIndex past the last result are (RFC 7644
    §3.4.2.4); a huge negative one is below 1 (startIndex 1, count 0). Only a value that
    is not an integer is 400."""
    parsed = parse_list_params(source, from_body=from_body, default_count=100, max_count=10,
                               resource="User")
    assert (parsed.start_index, parsed.count) == (start, count)


@pytest.mark.parametrize(("source", "from_body"), BAD_PARAMS, ids=[str(s) for s, _ in BAD_PARAMS])
def test_bad_list_parameters_are_400_invalid_value(source, from_body):
    """Values of the wrong type or unknown sort attributes are invalidValue, never a 500."""
    with pytest.raises(ScimError) as caught:
        parse_list_params(source, from_body=from_body, default_count=100, max_count=10,
                          resource="User")
    assert (caught.value.status, caught.value.scim_type) == (400, "invalidValue")


@pytest.mark.parametrize(("sort_by", "attr"), [("userName", "user_name"), ("title", "title"),
                                               ("emails", "primary_email"),
                                               ("meta.created", "created_at"),
                                               ("active", "active")])
@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sorting_is_stable_and_missing_values_go_last_if_ascending(db, staff, sort_by, attr,
                                                                   order):
    """sortBy/sortOrder order by value then id; unset values "last if ascending and first
    if descending" (RFC 7644 §3.4.2.3)."""
    tenant, live = staff
    page = run(db, tenant, params(sortBy=sort_by, sortOrder=order, count="10"))
    want = expected(live, attr, order == "descending")
    assert names(page) == want[:10]
    assert page.total_results == 23


def test_default_order_is_creation_then_id(db, staff):
    """Without sortBy the order is (meta.created, id), so pages never shuffle."""
    tenant, live = staff
    page = run(db, tenant, params())
    assert names(page) == expected(live, "created_at")[:10]


def test_index_pages_concatenate_to_the_whole_list(db, staff):
    """startIndex/count pages cover every user once, with exact totals (RFC 7644 §3.4.2.4)."""
    tenant, live = staff
    seen: list[str] = []
    for start in range(1, 24, 4):
        page = run(db, tenant, params(startIndex=str(start), count="4", sortBy="userName"))
        assert (page.total_results, page.start_index) == (23, start)
        assert page.items_per_page == len(page.resources)
        seen += names(page)
    assert seen == expected(live, "user_name")


def test_count_zero_returns_only_the_total(db, staff):
    """count=0 answers totalResults without resources."""
    tenant, _ = staff
    page = run(db, tenant, params(count="0", filter='title eq "engineer"'))
    assert (page.total_results, page.resources, page.items_per_page) == (5, [], 0)


def test_start_index_past_the_end_gives_an_empty_page(db, staff):
    """A startIndex beyond the results is an empty page with the true total."""
    tenant, _ = staff
    page = run(db, tenant, params(startIndex="100"))
    assert (page.total_results, page.items_per_page, page.start_index) == (23, 0, 100)


def test_filter_and_total_agree(db, staff):
    """totalResults counts with the same WHERE as the page, deleted users excluded."""
    tenant, live = staff
    page = run(db, tenant, params(filter="active eq false", count="10"))
    assert page.total_results == sum(not u.active for u in live) == 6
    assert all(not u.active for u in page.resources)


def test_too_many_filter_results_is_400_too_many(db, staff):
    """A filter matching more than maxResults is tooMany; a plain list is not."""
    tenant, _ = staff
    with pytest.raises(ScimError) as caught:
        run(db, tenant, params(filter="userName pr"), max_results=20)
    assert (caught.value.status, caught.value.scim_type) == (400, "tooMany")
    assert run(db, tenant, params(), max_results=20).total_results == 23


@pytest.mark.parametrize("paging", [{}, {"cursor": ""}])
def test_too_many_applies_when_every_match_fits_on_one_page(db, staff, paging):
    """6 matches on one page of 10 still exceed maxResults=5: tooMany, in both paging modes."""
    tenant, _ = staff
    with pytest.raises(ScimError) as caught:
        run(db, tenant, params(filter="active eq false", **paging), max_results=5)
    assert caught.value.scim_type == "tooMany"


def walk(db, tenant, **query) -> tuple[list[list[str]], list[ListPage]]:
    """Follow nextCursor from the first page to the last."""
    pages: list[ListPage] = []
    cursor = ""
    while cursor is not None:
        page = run(db, tenant, params(cursor=cursor, **query))
        pages.append(page)
        cursor = page.next_cursor
        assert len(pages) < 30
    return [names(p) for p in pages], pages


@pytest.mark.parametrize(("sort_by", "attr"), [(None, "created_at"), ("title", "title"),
                                               ("userName", "user_name")])
@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_cursor_walk_forward_then_back_visits_every_user_once(db, staff, sort_by, attr, order):
    """nextCursor pages cover all users in order; previousCursor retraces them (RFC 9865)."""
    tenant, live = staff
    query = {"count": "4", "sortOrder": order, **({"sortBy": sort_by} if sort_by else {})}
    forward, pages = walk(db, tenant, **query)
    want = expected(live, attr, order == "descending")
    assert [n for chunk in forward for n in chunk] == want
    assert [len(c) for c in forward] == [4, 4, 4, 4, 4, 3]
    assert pages[0].previous_cursor is None
    assert pages[-1].next_cursor is None
    assert all(p.total_results == 23 and p.start_index is None for p in pages)
    back: list[list[str]] = [forward[-1]]
    cursor = pages[-1].previous_cursor
    while cursor is not None:
        page = run(db, tenant, params(cursor=cursor, **query))
        back.append(names(page))
        cursor = page.previous_cursor
    assert list(reversed(back)) == forward


def test_cursor_pages_follow_the_filter(db, staff):
    """Cursor paging applies the filter on every page."""
    tenant, live = staff
    forward, _ = walk(db, tenant, count="2", filter='title eq "Engineer"')
    assert sorted(n for chunk in forward for n in chunk) == sorted(
        u.user_name for u in live if u.title == "Engineer")


def test_altered_or_foreign_cursors_are_400_invalid_cursor(db, staff):
    """A tampered, garbage, or other-query cursor is invalidCursor (RFC 9865 §2.4)."""
    tenant, _ = staff
    first = run(db, tenant, params(cursor="", count="4"))
    good = first.next_cursor
    body, _, mac = good.partition(".")
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
    for bad in (f"{flipped}.{mac}", "garbage", "a.b", good + "x", "é.é"):
        with pytest.raises(ScimError) as caught:
            run(db, tenant, params(cursor=bad, count="4"))
        assert (caught.value.status, caught.value.scim_type) == (400, "invalidCursor")
    with pytest.raises(ScimError) as caught:
        run(db, tenant, params(cursor=good, count="4", sortBy="userName"))
    assert caught.value.scim_type == "invalidCursor"
    with db.transaction(readonly=True) as s, pytest.raises(ScimError) as caught:
        run_list(s, User, base(tenant), params(cursor=good, count="4"), resource="User",
                 dialect=db.dialect, max_results=100, cursor_key=b"another key")
    assert caught.value.scim_type == "invalidCursor"
    # Another directory's cursor (same key, same query) is not that directory's position.
    with db.transaction(readonly=True) as s, pytest.raises(ScimError) as caught:
        run_list(s, User, "another-directory", params(cursor=good, count="4"),
                 resource="User", dialect=db.dialect, max_results=100, cursor_key=KEY)
    assert caught.value.scim_type == "invalidCursor"


def test_cursor_and_start_index_together_are_rejected(db, staff):
    """RFC 9865: a request uses startIndex or cursor, not both."""
    tenant, _ = staff
    with pytest.raises(ScimError) as caught:
        run(db, tenant, params(cursor="", startIndex="1"))
    assert (caught.value.status, caught.value.scim_type) == (400, "invalidValue")


def test_list_response_carries_cursors_or_start_index():
    """The ListResponse has startIndex for index paging and cursors for cursor paging."""
    by_index = list_response(ListPage([], 5, 1, 0), [])
    assert by_index == {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                        "totalResults": 5, "itemsPerPage": 0, "startIndex": 1,
                        "Resources": []}
    by_cursor = list_response(ListPage([], 5, None, 0, "n1", "p1"), [])
    assert (by_cursor["nextCursor"], by_cursor["previousCursor"]) == ("n1", "p1")
    assert "startIndex" not in by_cursor


def test_root_search_counts_both_types_against_max_results(db, staff):
    """At the root the filter's matches of both types count toward maxResults (tooMany);
    deleted users are not in the root result either."""
    tenant, live = staff
    with db.transaction() as s:
        s.add(Group(directory_id=tenant.directory.id, organization_id=tenant.org.id,
                    display_name="Buyers"))
    query = parse_list_params({"filter": 'userName pr or displayName eq "Buyers"'},
                              from_body=True, default_count=100, max_count=10, resource=None)
    with db.transaction(readonly=True) as s:
        page, total = root_page(s, base(tenant), query, dialect=db.dialect, max_results=24)
        assert total == len(live) + 1 == 24
        assert [kind for kind, _ in page] == ["User"] * 10
        with pytest.raises(ScimError) as caught:
            root_page(s, base(tenant), query, dialect=db.dialect, max_results=23)
    assert (caught.value.status, caught.value.scim_type) == (400, "tooMany")
