"""The user's own confirmation before a logout: a page whose form POSTs back with a token
kept in the browser's signed cookie. A cross-site GET (an image, a link on any page) only
ever gets the page, so nobody can end another person's sign-in for them (logout CSRF;
OIDC RP-Initiated Logout 1.0 §2 and §6 ask for this confirmation)."""

from __future__ import annotations

import hmac
import secrets
from html import escape

from flask import Response, request, session

from app.sso import pages

_CONFIRM = "sso_logout_confirm"


def confirmed() -> bool:
    """A POST of the confirmation form this browser was shown (the token matches, compared
    as bytes: ``hmac.compare_digest`` raises on a str with non-ASCII characters)."""
    expected = session.get(_CONFIRM)
    sent = request.form.get("confirm", "")
    return request.method == "POST" and isinstance(expected, str) and bool(sent) \
        and hmac.compare_digest(sent.encode(), expected.encode())


def confirmation_page(action: str) -> Response:
    """Ask before signing out; the form POSTs to ``action`` with a fresh token."""
    token = session[_CONFIRM] = secrets.token_urlsafe(24)
    return pages.page("Sign out", "<p>Do you want to sign out?</p>"
                      f"<form method=post action=\"{escape(action)}\">"
                      f"<input type=hidden name=confirm value=\"{token}\">"
                      "<button>Sign out</button></form>")
