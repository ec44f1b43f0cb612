"""The SSO purge: `roster sso purge-traces` reports every kind of row it deletes, and
back-channel logouts go by age whatever their status, once, never to be queued again."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from app.db import new_id, utcnow
from app.events import emit
from app.models import OutboxEvent
from app.models.sso import (
    AuthorizationCode,
    BackchannelLogout,
    IssuedToken,
    LoginSession,
    LoginTrace,
    OidcLoginRequest,
    SamlRequest,
    SeenAssertion,
)
from app.sso.backchannel import run_once
from app.sso.maintenance import purge_in_batches
from tests.conftest import rows
from tests.lifecycle.support import add_user, roster
from tests.sso.conftest import saml_connection


def _one_of_each(db, tenant, conn) -> str:
    """One row of each kind the purge deletes, due; a login session kept (the code's)."""
    user_id = add_user(db, tenant, "purged")
    now, org = utcnow(), tenant.org.id
    gone = now - timedelta(minutes=5)
    with db.transaction() as s:
        kept = LoginSession(organization_id=org, user_id=user_id,
                            revoked_at=now - timedelta(days=1))
        old = LoginSession(organization_id=org, user_id=user_id,
                           revoked_at=now - timedelta(days=31))
        s.add_all([kept, old])
        s.flush()
        s.add(LoginTrace(id=new_id(), organization_id=org, connection_id=conn.id,
                         protocol="saml", reason="old", detail="", payload={},
                         created_at=now - timedelta(days=31)))  # past the 30-day retention
        s.add(SamlRequest(id="_req-old", connection_id=conn.id, expires_at=gone))
        s.add(SeenAssertion(connection_id=conn.id, assertion_id="_a-old", expires_at=gone))
        s.add(OidcLoginRequest(id="0" * 64, connection_id=conn.id, nonce="n",
                               code_verifier="v", expires_at=gone))
        s.add(AuthorizationCode(code_hash="c" * 64, client_id="portal", user_id=user_id,
                                session_id=kept.id, redirect_uri="https://portal.test/cb",
                                auth_time=gone, expires_at=gone))
        s.add(IssuedToken(organization_id=org, user_id=user_id, client_id="portal",
                          token_type="access", token_hash="t-old",
                          expires_at=now - timedelta(days=2)))
        s.add(BackchannelLogout(outbox_event_id=new_id(), session_id=old.id, user_id=user_id,
                                client_id="portal", status="sent",
                                created_at=now - timedelta(days=31)))
    return user_id


def test_purge_traces_reports_every_kind_of_row_it_deletes(db, tenant, keys, database_url):
    """One due row of each kind: each count is printed. Before: only traces, SAML rows and
    OIDC attempts/codes were; the tokens, login sessions and back-channel logouts it
    deleted went unreported."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    _one_of_each(db, tenant, conn)
    out = roster(database_url, "sso", "purge-traces").output
    assert out.splitlines() == [
        "1 trace(s) deleted",
        "2 expired SAML request/replay row(s) deleted",
        "1 expired OIDC login attempt(s) deleted",
        "1 expired authorization code(s) deleted",
        "1 expired access/refresh token(s) deleted",
        "1 ended login session(s) deleted",
        "1 old back-channel logout(s) deleted",
    ]
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 1
    assert rows(db, "SELECT count(*) AS n FROM oidc_backchannel_logouts")[0].n == 0


def _logout(db, tenant, user_id: str, status: str, days: int) -> None:
    with db.transaction() as s:
        s.add(BackchannelLogout(outbox_event_id=new_id(), session_id=new_id(),
                                user_id=user_id, client_id="portal", status=status,
                                created_at=utcnow() - timedelta(days=days)))


def test_logouts_left_pending_without_a_provider_are_purged_by_age(db, tenant,
                                                                    database_url):
    """[oidc_provider] removed (no signing key: nothing sends back-channel logouts): the
    ones left pending, and one a dead worker left sending, go 30 days after they were
    queued, as sent and failed ones do; a recent pending one stays. Before: a pending one
    stayed for good."""
    user_id = add_user(db, tenant, "left")
    for status, days in (("pending", 31), ("sending", 31), ("failed", 31), ("pending", 1)):
        _logout(db, tenant, user_id, status, days)
    roster(database_url, "worker", "--until-idle")
    assert [r.status for r in rows(db, "SELECT status FROM oidc_backchannel_logouts")] \
        == ["pending"]


def test_a_purged_logout_is_not_queued_again(db, tenant):
    """A session revoked 31 days ago whose logout was sent then, its ``session.revoked``
    event still in the outbox (``events.retention_days`` 0 keeps every event, a dead
    webhook holds one): the purge deletes the logout (and the session, with its tokens),
    and the next back-channel round does not queue the event again. Before: it was queued
    once more (a row with no client, the session's tokens gone), purged 30 days later and
    queued again, for as long as the event stayed, and the record of the sent logout was
    replaced by one saying none was needed."""
    user_id = add_user(db, tenant, "revoked")
    long_ago = utcnow() - timedelta(days=31)
    with db.transaction() as s:
        login = LoginSession(organization_id=tenant.org.id, user_id=user_id,
                             revoked_at=long_ago)
        s.add(login)
        s.flush()
        s.add(IssuedToken(organization_id=tenant.org.id, user_id=user_id, client_id="portal",
                          session_id=login.id, token_type="refresh", token_hash="r-1",
                          revoked_at=long_ago, expires_at=utcnow() + timedelta(days=60)))
        event_id = emit(s, organization_id=tenant.org.id, type="session.revoked",
                        aggregate_id=user_id,
                        payload={"session_id": login.id, "user_id": user_id})
        s.add(BackchannelLogout(outbox_event_id=event_id, session_id=login.id,
                                user_id=user_id, client_id="portal", status="sent",
                                created_at=long_ago))
    with db.transaction() as s:
        s.execute(update(OutboxEvent).where(OutboxEvent.event_id == event_id)
                  .values(created_at=long_ago))
    counts, _more = purge_in_batches(db, trace_retention_days=30)
    assert counts["backchannel_logouts"] == 1
    assert run_once(db, None, timeout=1.0)["queued"] == 0
    assert rows(db, "SELECT count(*) AS n FROM oidc_backchannel_logouts")[0].n == 0
