"""Documents a customer admin sends the API (mapping rule sets, rules, IdP metadata): nested
past any parser's depth, or larger than the body limit, they are precise problems, never a
500 or a traceback, and nothing is written."""

from __future__ import annotations

import json

import pytest

from tests.api.test_frame import assert_problem
from tests.conftest import rows

DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
DEEP_XML = "<a>" * 100_000 + "</a>" * 100_000
# Nine levels of ten: 10**9 "lol"s once expanded (the "billion laughs" entity bomb).
_LOLS = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(2, 10))
ENTITY_BOMB = (f'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol1 "lol">{_LOLS}]>'
               '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
               'entityID="&lol9;"/>')


def _rule_set(depth: int) -> bytes:
    """A rule set whose one rule's condition is ``depth`` nested 'not's."""
    return (b'{"rules": [{"id": "r1", "match": ' + b'{"not": ' * depth
            + b'{"group": "Buyers"}' + b"}" * depth
            + b', "role": "buyer", "unit": {"ref": "root"}}]}')


@pytest.mark.parametrize(("method", "path"), [
    ("put", "/mapping"), ("post", "/mapping:preview"), ("post", "/mapping/rules"),
    ("put", "/mapping/rules/r1"), ("post", "/roles"), ("post", "/connections"),
])
def test_a_body_nested_100000_deep_is_a_400_on_every_document_route(client, keys, tenant,
                                                                       db, method, path):
    """100,000 '[' sent to a route that takes a document: 400 naming the body."""
    before = rows(db, "SELECT count(*) FROM audit_events")[0][0]
    response = getattr(client, method)(f"/api/v1/orgs/{tenant.org.id}{path}", data=DEEP_JSON,
                                       headers=keys["admin"].headers,
                                       content_type="application/json")
    assert assert_problem(response, 400, "validation")["errors"][0]["field"] == "body"
    assert rows(db, "SELECT count(*) FROM audit_events")[0][0] == before


@pytest.mark.parametrize(("method", "path"), [
    ("put", "/mapping"), ("post", "/mapping:preview"), ("post", "/connections"),
])
def test_a_body_over_the_limit_is_a_413_on_every_document_route(app, client, keys, tenant,
                                                                method, path):
    """A rule set or metadata larger than app.max_body_bytes: 413, not read."""
    limit = app.config["ROSTER"]["app"]["max_body_bytes"]
    body = json.dumps({"rules": [], "pad": "x" * limit})
    response = getattr(client, method)(f"/api/v1/orgs/{tenant.org.id}{path}", data=body,
                                       headers=keys["admin"].headers,
                                       content_type="application/json")
    assert_problem(response, 413, "payload-too-large")


@pytest.mark.parametrize("depth", [25, 5_000])
def test_a_rule_condition_nested_deep_is_an_answer_not_a_500(client, keys, tenant, depth):
    """A condition of nested 'not's, within the body's depth limit or past it: a JSON
    answer (a preview or a 400), never a 500."""
    response = client.post(f"/api/v1/orgs/{tenant.org.id}/mapping:preview",
                           data=_rule_set(depth), headers=keys["admin"].headers,
                           content_type="application/json")
    assert response.status_code in (200, 400), response.get_data(as_text=True)[:500]
    assert response.is_json


@pytest.mark.parametrize("xml", [DEEP_XML, ENTITY_BOMB], ids=["deep", "entity-bomb"])
def test_idp_metadata_nested_deep_or_expanding_is_a_400(client, keys, tenant, db, xml):
    """metadata_xml of 100,000 nested elements (a JSON string: no JSON depth), or whose
    entities expand to a billion: a 400 naming metadata_xml, nothing stored."""
    response = client.post(f"/api/v1/orgs/{tenant.org.id}/connections",
                           json={"name": "deep", "protocol": "saml", "metadata_xml": xml},
                           headers=keys["admin"].headers)
    body = assert_problem(response, 400, "validation")
    assert "metadata_xml" in {e["field"] for e in body.get("errors", [])}, body
    assert rows(db, "SELECT count(*) FROM sso_connections WHERE name = 'deep'")[0][0] == 0
