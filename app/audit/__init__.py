"""Audit: the append-only, hash-chained record of every change."""

from app.audit.log import Actor, chain_for, compute_hash, record

__all__ = ["Actor", "chain_for", "compute_hash", "record"]
