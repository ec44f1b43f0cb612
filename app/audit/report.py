"""The deprovisioning report: count, latency percentiles and the list, per organization."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.lifecycle import DeprovisionRecord


@dataclass(frozen=True)
class DeprovisionReport:
    """Latencies are received -> revocation committed, in milliseconds, of the applied
    deprovisionings; ``records`` lists the failed ones too (outcome "failed": nothing was
    revoked, README "Deprovisioning")."""

    records: list[DeprovisionRecord]
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None

    @property
    def count(self) -> int:
        """How many deprovisionings were applied in the period."""
        return sum(1 for r in self.records if r.outcome == "applied")

    @property
    def failed(self) -> int:
        """How many deprovisioning attempts failed (and were rolled back) in the period."""
        return len(self.records) - self.count


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile: the ceil(pct/100 * N)-th smallest value (None for no values).
    Rounding ``x + 0.5`` instead went one rank too high whenever ``x`` was an odd whole
    number (round half to even): the p50 of two latencies was the larger one."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(pct * len(ordered) / 100) - 1))
    return ordered[rank]


def latency_of(record: DeprovisionRecord) -> float:
    """Received -> committed; received -> applied when the commit stamp is missing."""
    if record.latency_ms is not None:
        return record.latency_ms
    return (record.applied_at - record.received_at).total_seconds() * 1000


def deprovision_report(session: Session, organization_id: str, since: datetime | None = None,
                       until: datetime | None = None) -> DeprovisionReport:
    """Every deprovisioning of the organization in the period, with latency figures."""
    stmt = (select(DeprovisionRecord).where(DeprovisionRecord.organization_id == organization_id)
            .order_by(DeprovisionRecord.received_at))
    if since:
        stmt = stmt.where(DeprovisionRecord.received_at >= since)
    if until:
        stmt = stmt.where(DeprovisionRecord.received_at < until)
    records = list(session.scalars(stmt))
    latencies = [latency_of(r) for r in records if r.outcome == "applied"]
    return DeprovisionReport(records, percentile(latencies, 50), percentile(latencies, 95),
                             max(latencies) if latencies else None)
