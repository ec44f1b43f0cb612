"""Events to the portal: the transactional outbox, webhook delivery and the pull feed."""

from app.events.outbox import emit, emit_many

__all__ = ["emit", "emit_many"]
