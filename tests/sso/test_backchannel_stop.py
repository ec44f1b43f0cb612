"""The back-channel logout sender told to stop (`roster worker` got SIGTERM) mid-batch."""

from __future__ import annotations

import dataclasses
import threading

from sqlalchemy import text

from app.db import new_id
from app.sso.backchannel import run_once
from app.sso.provider_views import provider_config
from tests.conftest import rows
from tests.sso.receiver import logout_receiver
from tests.sso.test_backchannel import _pending_delivery


def test_a_stop_mid_batch_starts_no_further_logout_and_gives_the_rest_back(
        db, tenant, keys, web, sso_app):
    """A batch is up to 20 POSTs at the timeout each (5 s): a worker told to stop went on
    posting them, past a supervisor's stop timeout, and the claims its SIGKILL cut short
    stayed 'sending' for the whole lease (over 100 s) before another worker sent them: the
    portal heard of revoked sessions that much later. The POST in flight is recorded, no
    other starts, and the rest are pending again at once."""
    _pending_delivery(db, tenant, keys, web)
    with db.engine.begin() as conn:  # a second revoked session of the same user
        conn.execute(text(
            "INSERT INTO oidc_backchannel_logouts (id, outbox_event_id, session_id, user_id, "
            "client_id, status, attempts, created_at) SELECT :id, :event, :session, user_id, "
            "client_id, status, attempts, created_at FROM oidc_backchannel_logouts"),
            {"id": new_id(), "event": new_id(), "session": new_id()})
    stop = threading.Event()
    with logout_receiver(on_post=stop.set) as (url, received):
        config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri=url)
        result = run_once(db, config, timeout=5, stop=stop)
    assert len(received) == 1
    assert result["sent"] == 1
    left = rows(db, "SELECT status, attempts, sent_at FROM oidc_backchannel_logouts")
    assert sorted((r.status, r.attempts) for r in left) == [("pending", 0), ("sent", 1)]
    assert [r.sent_at for r in left if r.status == "pending"] == [None]
