"""Events to the portal: the transactional outbox (delivery comes with the worker)."""

from app.events.outbox import emit

__all__ = ["emit"]
