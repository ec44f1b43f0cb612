"""When the OpenID Provider must sign the employee in again: ``prompt`` and ``max_age``
(OIDC Core §3.1.2.1), and where the browser goes for that login.

Roster keeps one login per browser and has no consent screen (the portal is a first-party
client its customers' admins connect), so:

* ``prompt=login``, or a login older than ``max_age`` seconds (``max_age=0`` is
  ``prompt=login``): the employee authenticates
  again at the customer's IdP, which is asked for a new authentication (SAML ``ForceAuthn``,
  OIDC ``prompt=login``); the code then carries the new ``auth_time``.
* ``prompt=select_account``: the browser goes to home-realm discovery (the work email form)
  before a code is issued, so the employee may sign in with another account.
* ``prompt=consent``: accepted and satisfied without a screen (nothing to consent to).
* ``id_token_hint`` naming another user than the browser's: ``login_required``;
* ``prompt=none`` with any other value is ``invalid_request`` (authlib checks it);
  ``prompt=none`` when a login would be needed (none yet, or one older than ``max_age``)
  goes back to the portal with ``login_required`` (OIDC Core §3.1.2.6).

The browser's signed cookie remembers, per authorization request, when Roster asked for a
new login. Freshness is the IdP's word, not Roster's: the login's ``authenticated_at``
(SAML AuthnInstant, OIDC auth_time) must fall after that moment (``prompt=login``) or within
``max_age``. A login made since Roster asked that is still not fresh (the IdP ignored
ForceAuthn, or the browser dropped ``reauth=1``) goes back to the portal with
``login_required`` instead of looping.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oidc.core.errors import LoginRequiredError

from app.sso.provider_keys import ProviderKeys

# Key of the browser's signed cookie: {authorization request key: unix time asked}.
REAUTH = "sso_reauth"
_KEEP = 5  # parallel authorization requests remembered per browser
LOGIN, SELECT_ACCOUNT, STALE = "login", "select_account", "stale"
# The prompt values Roster honours (discovery's prompt_values_supported).
PROMPT_VALUES = ("none", "login", "consent", "select_account")
# Seconds of clock difference allowed between the IdP's authentication instant and ours.
FRESH_SKEW = 10


def max_age_of(args: Mapping[str, str], redirect_uri: str | None = None,
               state: str | None = None) -> int | None:
    """The ``max_age`` parameter: a non-negative integer of seconds, or absent (§3.1.2.1).

    Anything else is ``invalid_request``, reported at ``redirect_uri`` when given."""
    raw = args.get("max_age")
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise InvalidRequestError("max_age must be a non-negative integer",
                                  redirect_uri=redirect_uri, state=state)
    return int(raw)


def check_prompts(prompts: list[str], redirect_uri: str | None, state: str | None) -> None:
    """Every ``prompt`` value is one Roster honours, else ``invalid_request`` at
    ``redirect_uri``: a value it would ignore (``create``, a typo) gives no sign to the
    portal that it was not acted on (OpenID Connect Prompt Create 1.0 §4.1: an OP SHOULD
    answer ``invalid_request`` to a value not in ``prompt_values_supported``)."""
    unknown = sorted(set(prompts) - set(PROMPT_VALUES))
    if unknown:
        raise InvalidRequestError(f"unsupported prompt value: {quotable(' '.join(unknown))}",
                                  redirect_uri=redirect_uri, state=state)


def quotable(value: str) -> str:
    """``value`` as an ``error_description`` may quote it (RFC 6749 §4.1.2.1: %x20-21 /
    %x23-5B / %x5D-7E), any other character as ``?``, at most 100 of them: authlib refuses
    to build an error with any other (a ValueError: ``prompt=é`` made a 500 page)."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in value[:100])


def demand(prompts: list[str], max_age: int | None, auth_time: float, login_time: float,
           now: float, asked_at: float | None) -> str | None:
    """What a signed-in browser still needs before a code: None, LOGIN, SELECT_ACCOUNT, or
    STALE (a new login was made, but the IdP did not authenticate the user again).

    ``auth_time``: when the IdP authenticated the user (SAML AuthnInstant, OIDC auth_time);
    ``login_time``: when Roster signed the browser in; ``asked_at``: when Roster sent this
    request's browser to sign in again. The IdP's instant decides freshness: a browser that
    drops ``reauth=1`` gets a new Roster login from the IdP's old session, not a fresh one.

    ``max_age=0`` is ``prompt=login`` (OIDC Core §3.1.2.1): a login made a second ago is
    not fresh enough, whatever ``FRESH_SKEW`` allows a positive ``max_age``."""
    if max_age == 0 and LOGIN not in prompts:
        prompts = [*prompts, LOGIN]
    fresh_wanted = wants_fresh(prompts, max_age)
    if asked_at is not None and login_time >= asked_at:
        if fresh_wanted and not _fresh(prompts, max_age, auth_time, now, asked_at):
            return STALE
        return None
    if fresh_wanted and not _fresh(prompts, max_age, auth_time, now, None):
        return LOGIN
    if SELECT_ACCOUNT in prompts:
        return SELECT_ACCOUNT
    return None


def _fresh(prompts: list[str], max_age: int | None, auth_time: float, now: float,
           asked_at: float | None) -> bool:
    """``prompt=login``: authenticated since Roster asked; ``max_age``: within it. Both
    allow ``FRESH_SKEW`` seconds of clock difference with the IdP."""
    if LOGIN in prompts and (asked_at is None or auth_time < asked_at - FRESH_SKEW):
        return False
    return max_age is None or now - auth_time <= max_age + FRESH_SKEW


def wants_fresh(prompts: list[str], max_age: int | None) -> bool:
    """Does the request want a recent authentication (``prompt=login``, any ``max_age``)?
    Then a browser without a login has the IdP authenticate anew too: its own session may
    be older."""
    return LOGIN in prompts or max_age is not None


def request_key(query_string: bytes) -> str:
    """Names one authorization request (its exact query: the portal's state and nonce)."""
    return hashlib.sha256(query_string).hexdigest()[:32]


def asked_at(cookie: Mapping[str, Any], key: str) -> float | None:
    """When Roster asked this browser to sign in again for this request, if it did."""
    value = (cookie.get(REAUTH) or {}).get(key)
    return float(value) if isinstance(value, int | float) else None


def remember_ask(cookie: MutableMapping[str, Any], key: str, now: float) -> None:
    """Note that a new login was asked for this request now (kept if already noted)."""
    known = dict(cookie.get(REAUTH) or {})
    if key not in known:
        known[key] = now
    cookie[REAUTH] = dict(list(known.items())[-_KEEP:])


def forget_ask(cookie: MutableMapping[str, Any], key: str) -> None:
    """The request got its code: a reload of the same URL asks again."""
    known = dict(cookie.get(REAUTH) or {})
    if known.pop(key, None) is not None:
        cookie[REAUTH] = known


def login_url(next_url: str, *, force: bool, connection: tuple[str, str] | None) -> str:
    """Where the browser signs in: the connection it used (``(protocol, id)``), or
    home-realm discovery; ``reauth=1`` asks the IdP for a new authentication."""
    params = {"next": next_url, **({"reauth": "1"} if force else {})}
    if connection is None:
        return f"/sso/login?{urlencode(params)}"
    protocol, connection_id = connection
    return f"/sso/{protocol}/{connection_id}/login?{urlencode(params)}"


def check_hint(args: Mapping[str, str], keys: ProviderKeys, issuer: str, user_id: str,
               redirect_uri: str, state: str | None) -> None:
    """``id_token_hint`` (OIDC Core §3.1.2.1): an ID token Roster issued (expired ones
    too), naming the user the portal expects. Not ours: ``invalid_request``. Another user
    than the browser's login: ``login_required``, not a code for someone else (the hint's
    user is not signed in here; "it SHOULD return an error, such as login_required")."""
    hint = args.get("id_token_hint")
    if not hint:
        return
    claims = keys.own_claims(hint, issuer)
    if claims is None:
        raise InvalidRequestError("id_token_hint is not an ID token of this provider",
                                  redirect_uri=redirect_uri, state=state)
    if claims.get("sub") != user_id:
        raise LoginRequiredError(redirect_uri=redirect_uri, state=state,
                                 description="the browser is signed in as another user "
                                             "than id_token_hint names")
