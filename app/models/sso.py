"""SSO connections, sessions, issued tokens, replay cache, login traces (issue 8)."""

from __future__ import annotations
