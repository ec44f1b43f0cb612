"""Discovery resources (RFC 7644 §4): ServiceProviderConfig, ResourceTypes, Schemas.

Truthful by construction: the flags come from the code that is actually wired, and the
limits from the same settings the list and filter code enforce.
"""

from __future__ import annotations

from typing import Any

from app.scim.schema import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE_USER,
    LIST_RESPONSE,
    ROSTER_USER,
    SCHEMAS,
)

SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"


def service_provider_config(base_url: str, scim: dict[str, Any], *, patch: bool,
                            filtering: bool, sort: bool,
                            bulk_max_operations: int) -> dict[str, Any]:
    """RFC 7643 §5: the features this server implements, with its real limits.

    No ``documentationUri`` (OPTIONAL): Roster serves no help pages. A password is accepted
    on every write, but a change takes effect only when ``scim.store_password_hash`` keeps
    a hash, so that setting is what ``changePassword`` reports. ``bulk_max_operations``
    is the most a Bulk can hold and succeed (app/scim/bulk.py ``max_operations``: the
    per-credential rate limit may allow fewer than ``scim.bulk_max_operations``).
    """
    return {
        "schemas": [SPC_SCHEMA],
        "patch": {"supported": patch},
        "bulk": {"supported": True, "maxOperations": bulk_max_operations,
                 "maxPayloadSize": scim["bulk_max_payload_bytes"]},  # app/scim/bulk.py
        "filter": {"supported": filtering, "maxResults": scim["max_filter_results"]},
        "changePassword": {"supported": bool(scim["store_password_hash"])},
        "sort": {"supported": sort},
        "etag": {"supported": True},
        "pagination": {"cursor": filtering, "index": True,
                       "defaultPaginationMethod": "index",
                       "defaultPageSize": scim["default_page_size"],
                       "maxPageSize": scim["max_page_size"]},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": True,
            "description": "A directory token issued by `roster directory create` "
                           "(Authorization: Bearer <token>).",
            "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
        }],
        "meta": {"resourceType": "ServiceProviderConfig",
                 "location": f"{base_url}/ServiceProviderConfig"},
    }


def resource_types(base_url: str) -> list[dict[str, Any]]:
    """RFC 7643 §6: User (with its extensions) and Group."""
    return [
        {"schemas": [RESOURCE_TYPE_SCHEMA], "id": "User", "name": "User",
         "endpoint": "/Users", "description": "User Account", "schema": CORE_USER,
         "schemaExtensions": [{"schema": ENTERPRISE_USER, "required": False},
                              {"schema": ROSTER_USER, "required": False}],
         "meta": {"resourceType": "ResourceType", "location": f"{base_url}/ResourceTypes/User"}},
        {"schemas": [RESOURCE_TYPE_SCHEMA], "id": "Group", "name": "Group",
         "endpoint": "/Groups", "description": "Group", "schema": CORE_GROUP,
         "schemaExtensions": [],
         "meta": {"resourceType": "ResourceType",
                  "location": f"{base_url}/ResourceTypes/Group"}},
    ]


def schemas(base_url: str) -> list[dict[str, Any]]:
    """RFC 7643 §7: every schema, from the same definitions the code uses."""
    return [s.to_scim(base_url) for s in SCHEMAS.values()]


def list_response(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A complete ListResponse for discovery collections (RFC 7644 §4)."""
    return {"schemas": [LIST_RESPONSE], "totalResults": len(resources),
            "itemsPerPage": len(resources), "startIndex": 1, "Resources": resources}
