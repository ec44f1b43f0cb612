"""Deprovisioning records, receipts, checkpoints, webhook deliveries (issue 7)."""

from __future__ import annotations
