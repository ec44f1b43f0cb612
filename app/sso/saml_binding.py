"""SP-initiated SAML logins bound to the browser that started them (no login CSRF).

Without it, a Response answering an AuthnRequest that one browser started was accepted
from any browser: an attacker could start a login, sign in at the IdP as themselves, and
post their own Response from a victim's browser, who would then act in the portal as the
attacker. The browser that starts a login gets a cookie holding the ids of the requests it
started (signed with ``app.secret_key``); the ACS accepts a Response to a request only
from a browser whose cookie names it. (IdP-initiated Responses answer no request and are
the connection's opt-in risk, ``--idp-initiated``.)

The ACS is a cross-site POST from the IdP, so the cookie is ``SameSite=None; Secure``
over https; over plain http (development, where the IdP is usually on the same host)
browsers refuse ``SameSite=None`` without ``Secure``, and it is ``Lax``.
"""

from __future__ import annotations

from flask import Request, Response, current_app
from itsdangerous import BadSignature, URLSafeSerializer

COOKIE = "roster_saml_started"
_KEPT = 5  # logins one browser may have under way at once (tabs)
_SALT = "roster.saml-started"


def _serializer() -> URLSafeSerializer | None:
    secret = current_app.secret_key
    if not secret:
        return None
    # The last key signs; every key verifies (a cookie signed before a rotation still counts).
    return URLSafeSerializer([*current_app.config.get("SECRET_KEY_FALLBACKS", []), secret],
                             salt=_SALT)


def _ids(serializer: URLSafeSerializer, request: Request) -> list[str]:
    """The request ids the browser's cookie names; none when it is missing or forged."""
    try:
        ids = serializer.loads(request.cookies.get(COOKIE, ""))
    except BadSignature:
        return []
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def started(request: Request) -> frozenset[str] | None:
    """The request ids this browser started; None when no ``app.secret_key`` is set (the
    binding is then not enforced: nothing could sign the cookie)."""
    serializer = _serializer()
    return None if serializer is None else frozenset(_ids(serializer, request))


def remember(request: Request, response: Response, request_id: str,
             ttl_seconds: int) -> None:
    """Add ``request_id`` to the browser's cookie (the last few are kept)."""
    serializer = _serializer()
    if serializer is None:
        return
    ids = [i for i in _ids(serializer, request) if i != request_id]
    secure = request.is_secure
    response.set_cookie(COOKIE, serializer.dumps([*ids, request_id][-_KEPT:]),
                        max_age=ttl_seconds, path="/sso/saml/", httponly=True, secure=secure,
                        samesite="None" if secure else "Lax")
