"""Events to the portal: the transactional outbox, webhook delivery and the pull feed."""

from app.events.outbox import emit

__all__ = ["emit"]
