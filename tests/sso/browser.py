"""A scripted browser: follows redirects, auto-POSTs SAML forms, fills login forms.

Requests to the Roster host go to the Flask test client; requests to 127.0.0.1 (the real
IdP) go over HTTP with requests. Anything else (the portal) is where the journey ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import lxml.html
import requests
from flask.testing import FlaskClient

ROSTER_HOST = "roster.test"
_AUTO_POST_FIELDS = {"SAMLResponse", "SAMLRequest"}


@dataclass
class Page:
    """One response as the browser saw it."""

    url: str
    status: int
    headers: dict[str, str]
    text: str

    def form(self, index: int = 0) -> tuple[str, str, dict[str, str]]:
        """(method, absolute action URL, field values) of a form on this page."""
        doc = lxml.html.fromstring(self.text)
        # Say what the page was instead (an IdP's error page has no form), not IndexError.
        assert len(doc.forms) > index, f"no form on {self.url[:80]}: " + " ".join(
            doc.text_content().split())[:600]
        form = doc.forms[index]
        values = {k: v for k, v in form.form_values()}
        return (form.method or "GET").upper(), urljoin(self.url, form.action or self.url), values


@dataclass
class Browser:
    """Drives a complete login across Roster and the IdP, recording what was posted."""

    web: FlaskClient
    http: requests.Session = field(default_factory=requests.Session)
    posted: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def _send(self, method: str, url: str, data: dict[str, str] | None) -> Page:
        parts = urlsplit(url)
        if parts.netloc == ROSTER_HOST:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            resp = self.web.open(path, method=method, data=data,
                                 base_url=f"{parts.scheme}://{ROSTER_HOST}")
            return Page(url, resp.status_code, dict(resp.headers), resp.get_data(as_text=True))
        resp = self.http.request(method, url, data=data, allow_redirects=False, timeout=15)
        return Page(url, resp.status_code, dict(resp.headers), resp.text)

    def go(self, method: str, url: str, data: dict[str, str] | None = None) -> Page:
        """Send, then follow redirects and SAML auto-POST forms until a page or the portal."""
        for _ in range(25):
            host = urlsplit(url).hostname
            if host not in (ROSTER_HOST, "127.0.0.1"):
                raise AssertionError(f"the browser would leave for {url}")
            if method == "POST":
                self.posted.append((url, dict(data or {})))
            page = self._send(method, url, data)
            if page.status in (301, 302, 303, 307):
                target = urljoin(url, page.headers["Location"])
                if urlsplit(target).hostname not in (ROSTER_HOST, "127.0.0.1"):
                    return page
                method, url, data = ("GET", target, None) if page.status != 307 else (
                    method, target, data)
                continue
            if "<form" in page.text and _AUTO_POST_FIELDS & set(page.form()[2]):
                method, url, data = page.form()
                continue
            return page
        raise AssertionError("too many redirects")

    def submit(self, page: Page, **values: str) -> Page:
        """Fill and submit the first form of ``page`` (e.g. the IdP's login form)."""
        method, url, fields = page.form()
        return self.go(method, url, {**fields, **values})

    def last_post(self, field_name: str) -> tuple[str, dict[str, str]]:
        """The last POST that carried ``field_name`` (e.g. the SAMLResponse to our ACS)."""
        for url, data in reversed(self.posted):
            if field_name in data:
                return url, data
        raise AssertionError(f"nothing posted {field_name}")
