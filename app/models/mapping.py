"""Mapping rules and their history (issue 6)."""

from __future__ import annotations
