"""The ``route`` label of a request's metrics and access line: the URL rule it matched.

A label value per path would be unbounded, at a client's choice, so a request is named by
its rule (``/scim/v2/Users/<user_id>``), and one matching no rule by ``<unmatched>``. A
wrong method on a known path (405, RFC 9110 §15.5.6) matched a rule all the same: it is
counted under that rule, so an operator sees which endpoint gets wrong methods. An
asterisk-form target (``OPTIONS *``, RFC 9112 §3.2.4; gunicorn passes it as the path ``*``)
asks about the server, not a path: it is ``*``.
"""

from __future__ import annotations

from flask import Flask, Request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import RequestRedirect

UNMATCHED = "<unmatched>"
ASTERISK = "*"


def route_label(app: Flask, req: Request) -> str:
    """The rule ``req`` matched; for a 405, the rule its path matches with an allowed
    method (Werkzeug kept none on the request); else :data:`UNMATCHED`."""
    if req.url_rule is not None:
        return req.url_rule.rule
    if req.environ.get("PATH_INFO") == ASTERISK:
        return ASTERISK
    refused = req.routing_exception
    if not isinstance(refused, MethodNotAllowed) or not refused.valid_methods:
        return UNMATCHED
    adapter = app.create_url_adapter(req)
    if adapter is None:
        return UNMATCHED
    try:
        rule, _args = adapter.match(method=next(iter(refused.valid_methods)),
                                    return_rule=True)
    except (HTTPException, RequestRedirect):  # a rule that would redirect: not this path's
        return UNMATCHED
    return rule.rule
