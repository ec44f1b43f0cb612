"""Audit: the append-only, hash-chained record of every change."""

from app.audit.log import SYSTEM, Actor, chain_for, compute_hash, record

__all__ = ["SYSTEM", "Actor", "chain_for", "compute_hash", "record"]
