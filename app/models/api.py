"""API keys and rate-limit counters (issue 3)."""

from __future__ import annotations
