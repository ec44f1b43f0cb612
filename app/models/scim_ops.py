"""SCIM dialect counters, flight recorder, OAuth clients for IdPs (issue 5)."""

from __future__ import annotations
