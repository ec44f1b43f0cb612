"""Names of the IdP dialect normalisations Roster applies (counted per directory, issue 5).

Pure modules append these keys to a ``notes: list[str]`` passed in by the view; the view
stores them for the dialect report and the flight recorder.
"""

from __future__ import annotations

from collections.abc import Iterable

CAPITALISED_OP = "capitalised_op"  # Entra: "Replace" instead of "replace"
STRING_BOOLEAN = "string_boolean"  # Entra: "True"/"False" instead of true/false
# "True" compared in a filter: Entra's mapping target roles[primary eq "True"].value, sent as
# named in both of its dialects, so no sign of either (nor of the legacy one's string values).
STRING_BOOLEAN_IN_FILTER = "string_boolean_in_filter"
LEGACY_MEMBER_REMOVAL = "legacy_member_removal"  # Entra: remove path=members with value list
UNQUOTED_FILTER_VALUE = "unquoted_filter_value"  # Entra: externalId eq abc
CAPITALISED_ATTRIBUTE = "capitalised_attribute"  # Entra: UserName, DisplayName
STRAY_ID = "stray_id"  # Entra: top-level "id" in a PATCH body
OPERATION_NAME = "operation_name"  # Entra: per-operation "name" member
BARE_STRING_MANAGER = "bare_string_manager"  # Entra: manager as a bare string
EMPTY_VALUE_CLEARS = "empty_value_clears"  # Entra: "" or null meaning "clear"
PATHLESS_DOTTED_KEYS = "pathless_dotted_keys"  # Entra compliant: {"name.givenName": ...}
OKTA_PUT_UPDATE = "okta_put_update"  # Okta: GET then PUT of the full user
PATHLESS_ACTIVE = "pathless_active"  # Okta: {"op":"replace","value":{"active":false}} (or true)
# An extension block carrying a "schemas" member of its own (scim2-client and others).
EXTENSION_SCHEMAS = "extension_schemas"
MEMBERS_REPLACE_ALL = "members_replace_all"  # Okta Group Push: replace members with full list
# Entra: the tenant URL carries aadOptscim062020, which switches on its compliant dialect.
ENTRA_FLAG = "entra_flag"
_ENTRA_FLAG_NAME = "aadoptscim062020"


def names_entra_flag(parameter_names: Iterable[str]) -> bool:
    """Whether a request's query names Entra's aadOptscim062020 flag (in any case, with or
    without a value: ``?aadOptSCIM062020=true``)."""
    return any(name.lower() == _ENTRA_FLAG_NAME for name in parameter_names)
