"""Form bodies (``application/x-www-form-urlencoded``) held to the body limit and read as sent.

The OAuth token endpoints (``/oauth/token``, ``/sso/oidc/token`` and the provider's other
form endpoints, RFC 6749 §3.2) and the SAML ACS (the HTTP-POST binding) read forms.
Werkzeug parses a form body with one ``read()`` of a stream limited to
``app.max_body_bytes``: a chunked body (no Content-Length, RFC 9112 §7.1) longer than the
limit came out cut at the limit without a word, and the cut was parsed as the form, its
later parameters silently gone (as JSON bodies were before app/json_input.py). A
compressed body (``Content-Encoding: gzip``) was parsed as if it were the form, and its
answer named a missing parameter instead of the coding.
"""

from __future__ import annotations

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from app.json_input import unsupported_coding

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


class BoundedFormRequest(Request):
    """Flask's request, whose form body is refused whole when it cannot be read as sent: 413
    past the limit with or without a Content-Length, 415 in a content coding (RFC 9110
    §8.4, §15.5.16)."""

    def _load_form_data(self) -> None:
        """Werkzeug's form parsing, after the checks above (the form's first access)."""
        if "form" not in self.__dict__ and self.mimetype == FORM_MEDIA_TYPE:
            coding = unsupported_coding(self.headers.get("Content-Encoding"))
            if coding:
                raise UnsupportedMediaType(f"Content-Encoding {coding!r} is not supported; "
                                           "send the form uncompressed")
            limit = self.max_content_length
            if limit is not None and self.content_length is None \
                    and "stream" not in self.__dict__:
                self._read_whole(limit)
        super()._load_form_data()

    def _read_whole(self, limit: int) -> None:
        # One byte past the limit tells a body that is too long from one exactly at it; the
        # body read is cached, and parsed from there.
        self.max_content_length = limit + 1
        try:
            data = self.get_data(cache=True, parse_form_data=False)
        finally:
            self.max_content_length = limit
        if len(data) > limit:
            raise RequestEntityTooLarge(f"the request body is larger than {limit} bytes")
