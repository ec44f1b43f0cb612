"""Integers in /api/v1 query strings are ASCII decimal digits, as under /scim: Python's
int() also reads "1_0" (10), "+1", " 1" and other scripts' digits (fullwidth "1"), so a typo or a
pasted value was taken as some number instead of a 400 naming the parameter."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.api.test_frame import assert_problem

ODD = ["1_0", "+1", " 1", "1 ", "\uff11", "\u0661", "0x1"]


@pytest.mark.parametrize("value", ODD)
def test_a_query_integer_that_is_not_ascii_digits_is_a_400(client, keys, tenant, value):
    """``limit`` of a list, the audit export's ``after_seq`` and the feed's ``limit``."""
    operator = keys["operator"].headers
    for path, name in (("/api/v1/orgs", "limit"),
                       (f"/api/v1/audit/export?organization={tenant.org.id}", "after_seq"),
                       ("/api/v1/events/deliveries", "limit")):
        sep = "&" if "?" in path else "?"
        response = client.get(f"{path}{sep}{name}={quote(value)}", headers=operator)
        problem = assert_problem(response, 400, "validation")
        assert [e["field"] for e in problem["errors"]] == [name], path


def test_plain_digits_still_work(client, keys, tenant):
    """``limit=2``, ``limit=02`` and ``after_seq=0`` are numbers as before."""
    operator = keys["operator"].headers
    for url in ("/api/v1/orgs?limit=2", "/api/v1/orgs?limit=02",
                f"/api/v1/audit/export?organization={tenant.org.id}&after_seq=0"):
        assert client.get(url, headers=operator).status_code == 200, url
