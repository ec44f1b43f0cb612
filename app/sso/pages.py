"""Plain HTML pages of the login flow: no scripts except the auto-POST of a form."""

from __future__ import annotations

from html import escape

from flask import Response

_STYLE = "body{font-family:sans-serif;max-width:36em;margin:3em auto;line-height:1.5}"


def page(title: str, body_html: str, status: int = 200) -> Response:
    """A complete, self-contained page; ``body_html`` must already be escaped."""
    html = (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body_html}</body></html>")
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    # No page of another site may frame ours (a "Sign out" or discovery button under a
    # decoy: clickjacking); X-Frame-Options for browsers that predate frame-ancestors.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action *; frame-ancestors 'none'")
    response.headers["X-Frame-Options"] = "DENY"
    return response


def refused(message: str, correlation_id: str | None, status: int = 403) -> Response:
    """The login was refused: say so plainly, with the id an admin can look up."""
    return page("Sign-in refused", f"<p>{escape(message)}</p>{_reference(correlation_id)}",
                status)


def failed(request_id: str | None) -> Response:
    """An unexpected error (500): no detail, the id under which the log holds it."""
    return page("Sign-in failed", "<p>Something went wrong on our side.</p>"
                + _reference(request_id), 500)


def _reference(correlation_id: str | None) -> str:
    return (f"<p>Reference: <code id=correlation-id>{escape(correlation_id)}</code>. "
            "Quote it to your administrator.</p>") if correlation_id else ""


def discovery_form(next_url: str, message: str = "", status: int = 200, *,
                   reauth: bool = False) -> Response:
    """Ask for the work email address (home-realm discovery); ``reauth`` is carried on to
    the connection's login (the IdP is asked for a new authentication)."""
    note = f"<p>{escape(message)}</p>" if message else ""
    fresh = "<input type=hidden name=reauth value=1>" if reauth else ""
    return page("Sign in", f"{note}<form method=post action=/sso/discover>"
                f"<input type=hidden name=next value=\"{escape(next_url)}\">{fresh}"
                "<label>Work email <input type=email name=email required></label> "
                "<button>Continue</button></form>", status)


def chooser(options: list[tuple[str, str]]) -> Response:
    """Several connections serve this domain: let the user pick one."""
    items = "".join(f"<li><a href=\"{escape(url)}\">{escape(name)}</a></li>"
                    for name, url in options)
    return page("Choose how to sign in", f"<ul>{items}</ul>")


def signed_in(display: str) -> Response:
    """Shown after a login when there is nowhere allowed to go back to."""
    return page("Signed in", f"<p>You are signed in as {escape(display)}.</p>")
