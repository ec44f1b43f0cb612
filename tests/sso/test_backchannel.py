"""Back-channel logout: a revoked session reaches the portal's receiver as a signed token."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from app.audit import Actor
from app.db import utcnow
from app.lifecycle import Trigger, deprovision_user
from app.models import User
from app.models.sso import BackchannelLogout
from app.sso.backchannel import EVENT, claim, collect, lease_seconds, record_results, run_once
from app.sso.provider_views import provider_config
from tests.conftest import rows
from tests.lockwait import in_flight, started
from tests.sso.lockprobe import can_write
from tests.sso.portal import ISSUER, exchange, introspect, login_and_code
from tests.sso.receiver import logout_receiver

ADMIN = Actor(type="operator", id="tests")


def _deprovision(db, user_id: str) -> None:
    with db.transaction() as s:
        deprovision_user(s, s.get(User, user_id), ADMIN, trigger=Trigger.operator)


def test_deprovisioning_sends_a_signed_logout_token_to_the_portal(db, tenant, keys, web,
                                                                   sso_app):
    """Lifecycle revokes the session; our sender POSTs a valid Logout Token for it."""
    user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()
    session_id = rows(db, "SELECT id FROM login_sessions")[0].id
    _deprovision(db, user.id)
    assert introspect(web, tokens["access_token"]) == {"active": False}
    with logout_receiver() as (url, received):
        config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri=url)
        result = run_once(db, config, timeout=5)
        assert result["sent"] == 1
        assert run_once(db, config, timeout=5)["sent"] == 0
    assert len(received) == 1
    jwks = KeySet.import_key_set(web.get("/sso/oidc/jwks").get_json())
    token = jwt.decode(received[0], jwks, algorithms=["RS256"])
    assert token.header["typ"] == "logout+jwt"
    assert token.claims["iss"] == ISSUER
    assert token.claims["aud"] == "portal"
    assert token.claims["sub"] == user.id
    assert token.claims["sid"] == session_id
    assert token.claims["events"] == {EVENT: {}}
    assert "nonce" not in token.claims
    sent = rows(db, "SELECT status, attempts FROM oidc_backchannel_logouts")
    assert [(r.status, r.attempts) for r in sent] == [("sent", 1)]


def test_a_failing_receiver_is_retried_then_marked_failed(db, tenant, keys, web, sso_app):
    """A 500 from the portal keeps the delivery pending, up to the attempt limit."""
    user, req, code = login_and_code(db, tenant, keys, web)
    exchange(web, code, req.verifier)
    _deprovision(db, user.id)
    with logout_receiver(status=500) as (url, received):
        config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri=url)
        results = [run_once(db, config, timeout=5) for _ in range(5)]
    assert [r["retry"] for r in results] == [1, 1, 1, 1, 0]
    assert results[-1]["failed"] == 1
    assert len(received) == 5
    row = rows(db, "SELECT status, last_error FROM oidc_backchannel_logouts")[0]
    assert (row.status, row.last_error) == ("failed", "HTTP 500")


def test_sessions_without_portal_tokens_send_nothing(db, tenant, keys, web, sso_app):
    """A login that never reached the portal has no client to notify."""
    user, _req, _code = login_and_code(db, tenant, keys, web)
    _deprovision(db, user.id)
    with logout_receiver() as (url, received):
        config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri=url)
        assert run_once(db, config, timeout=5)["queued"] == 0
    assert received == []


def test_roster_worker_sends_back_channel_logouts(db, database_url, tenant, keys, web, sso_app):
    """`roster worker` runs the back-channel sender: a deprovisioning reaches the portal."""
    from click.testing import CliRunner

    from app.cli import cli
    from app.cli.commands import register

    register()
    user, req, code = login_and_code(db, tenant, keys, web)
    exchange(web, code, req.verifier)
    _deprovision(db, user.id)
    op = sso_app.config["ROSTER"]["oidc_provider"]
    with logout_receiver() as (url, received):
        env = {"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test",
               "ROSTER_APP__BASE_URL": "http://roster.test",
               "ROSTER_APP__SECRET_KEY": sso_app.config["ROSTER"]["app"]["secret_key"],
               "ROSTER_OIDC_PROVIDER__SIGNING_KEY_FILE": op["signing_key_file"],
               "ROSTER_OIDC_PROVIDER__PORTAL_CLIENT_ID": op["portal_client_id"],
               "ROSTER_OIDC_PROVIDER__PORTAL_CLIENT_SECRET_SHA256":
                   op["portal_client_secret_sha256"],
               "ROSTER_OIDC_PROVIDER__PORTAL_REDIRECT_URIS": ",".join(op["portal_redirect_uris"]),
               "ROSTER_OIDC_PROVIDER__PORTAL_BACKCHANNEL_LOGOUT_URI": url}
        result = CliRunner().invoke(cli, ["worker", "--until-idle"], env=env,
                                    catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(received) == 1
    token = jwt.decode(received[0], KeySet.import_key_set(web.get("/sso/oidc/jwks").get_json()),
                       algorithms=["RS256"])
    assert token.claims["sub"] == user.id


def _pending_delivery(db, tenant, keys, web) -> None:
    """A deprovisioned user whose portal tokens make one queued back-channel delivery."""
    user, req, code = login_and_code(db, tenant, keys, web)
    exchange(web, code, req.verifier)
    _deprovision(db, user.id)
    assert run_once(db, None, timeout=5)["queued"] == 1


def test_the_sender_holds_no_lock_while_the_portal_answers(db, tenant, keys, web, sso_app):
    """While the POST is in flight, another connection can write the delivery rows."""
    _pending_delivery(db, tenant, keys, web)
    seen: list[bool] = []
    probe = "UPDATE oidc_backchannel_logouts SET attempts = attempts"
    with logout_receiver(on_post=lambda: seen.append(can_write(db, probe))) as (url, received):
        config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri=url)
        assert run_once(db, config, timeout=5)["sent"] == 1
    assert (seen, len(received)) == ([True], 1)
    rows_ = rows(db, "SELECT status, attempts, sent_at FROM oidc_backchannel_logouts")
    assert [(r.status, r.attempts) for r in rows_] == [("sent", 1)]


def test_two_senders_at_once_deliver_each_logout_once(db, tenant, keys, web, sso_app):
    """A claimed delivery is passed by: two concurrent rounds POST the token once."""
    _pending_delivery(db, tenant, keys, web)
    results: list[dict] = []
    with logout_receiver(on_post=lambda: time.sleep(0.5)) as (url, received):
        config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri=url)
        threads = [threading.Thread(target=lambda: results.append(
            run_once(db, config, timeout=5))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(received) == 1
    assert sorted(r["sent"] for r in results) == [0, 1]


def test_a_claim_left_by_a_dead_worker_is_taken_again_after_its_lease(db, tenant, keys, web,
                                                                       sso_app):
    """A fresh claim (sending) is left alone; one older than the lease is sent again."""
    _pending_delivery(db, tenant, keys, web)
    lease = lease_seconds(5)
    with db.transaction() as s:
        row = s.scalars(select(BackchannelLogout)).one()
        row.status, row.sent_at = "sending", utcnow() - timedelta(seconds=lease - 30)
    with logout_receiver() as (url, received):
        config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri=url)
        assert run_once(db, config, timeout=5)["sent"] == 0
        with db.transaction() as s:
            s.scalars(select(BackchannelLogout)).one().sent_at = \
                utcnow() - timedelta(seconds=lease + 1)
        assert run_once(db, config, timeout=5)["sent"] == 1
    assert len(received) == 1
    assert rows(db, "SELECT status FROM oidc_backchannel_logouts")[0].status == "sent"


def test_a_late_result_after_the_claim_was_taken_over_is_not_recorded(db, tenant, keys, web,
                                                                      sso_app):
    """A worker whose lease ran out does not overwrite the new claimer's row."""
    _pending_delivery(db, tenant, keys, web)
    config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri="http://x/")
    first = utcnow()
    with db.transaction() as s:
        [item], failed = claim(s, config, first, lease=lease_seconds(5))
    assert failed == 0
    with db.transaction() as s:
        s.get(BackchannelLogout, item.id).sent_at = first + timedelta(seconds=200)
    with db.transaction() as s:
        assert record_results(s, [(item.id, 500)], first) == {"sent": 0, "failed": 0,
                                                              "retry": 0}
    row = rows(db, "SELECT status, attempts FROM oidc_backchannel_logouts")[0]
    assert (row.status, row.attempts) == ("sending", 0)


def test_two_workers_turning_one_revocation_into_deliveries_at_once_both_go_on(
        db, tenant, keys, web, sso_app, dialect):
    """Worker A has queued the delivery of a new revocation and not committed yet when
    worker B (another node) collects the same event: B waits for A's row and then queues
    nothing more, and sends A's delivery once A committed. B's insert failed on the unique
    (event, client) instead, an IntegrityError that stopped `roster worker` (PostgreSQL)."""
    if dialect != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's (SQLite has one at a time)")
    user, req, code = login_and_code(db, tenant, keys, web)
    exchange(web, code, req.verifier)
    _deprovision(db, user.id)
    with logout_receiver() as (url, received):
        config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri=url)
        with in_flight(db, lambda session: (collect(session), session.flush())):
            worker_b, outcome = started(db, lambda: run_once(db, config, timeout=5))
        worker_b.join(30)
        assert not isinstance(outcome["result"], BaseException), outcome
        assert outcome["result"]["queued"] == 0
        assert run_once(db, config, timeout=5)["queued"] == 0
    assert len(received) == 1
    assert [r.status for r in rows(db, "SELECT status FROM oidc_backchannel_logouts")] == [
        "sent"]


def _one_logout(db, tenant, keys, web) -> None:
    """A portal login with tokens, then its user deprovisioned: one logout to send."""
    user, req, code = login_and_code(db, tenant, keys, web)
    exchange(web, code, req.verifier)
    _deprovision(db, user.id)


def _outcome(db) -> tuple[str, str | None]:
    row = rows(db, "SELECT status, last_error FROM oidc_backchannel_logouts")[0]
    return row.status, row.last_error


def test_a_receiver_answering_a_byte_at_a_time_is_cut_at_the_timeout(db, tenant, keys, web,
                                                                      sso_app):
    """The portal sends its status line a byte every 0.05 s (each read well within the
    1 s timeout, the whole over 2 s): the POST ends at the timeout and is retried later.
    Before: the sender waited as long as the portal liked (past its claim's lease, when
    another worker sends the same logout again), then counted it sent."""
    _one_logout(db, tenant, keys, web)
    slow = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"p" * 40 + b"\r\nContent-Length: 0\r\n\r\n"
    with logout_receiver(answer=slow, byte_every=0.05) as (url, received):
        config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri=url)
        result = run_once(db, config, timeout=1.0)
    assert len(received) == 1
    assert (result["sent"], result["retry"]) == (0, 1)
    assert _outcome(db) == ("pending", "unreachable")


def test_a_redirect_is_not_a_delivery(db, tenant, keys, web, sso_app):
    """The portal answers 303 (to a page that answers a GET with 200): the logout token
    was not accepted, the delivery is retried (``HTTP 303``). Before: urllib followed the
    redirect with a GET without the token and counted its 200 as sent."""
    _one_logout(db, tenant, keys, web)
    moved = b"HTTP/1.1 303 See Other\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
    with logout_receiver(answer=moved) as (url, received):
        config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri=url)
        result = run_once(db, config, timeout=5)
    assert len(received) == 1
    assert (result["sent"], result["retry"]) == (0, 1)
    assert _outcome(db) == ("pending", "HTTP 303")


def test_a_garbled_answer_is_a_failed_attempt_not_a_crash(db, tenant, keys, web, sso_app):
    """The portal answers something that is not HTTP: the attempt failed (retried
    later), and the round goes on. Before: http.client's BadStatusLine (not an OSError)
    escaped the sender, ended `roster worker`'s round, and the claim stayed ``sending``
    until its lease ran out."""
    _one_logout(db, tenant, keys, web)
    with logout_receiver(answer=b"garbage\r\n\r\n") as (url, received):
        config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri=url)
        result = run_once(db, config, timeout=5)
    assert len(received) == 1
    assert (result["sent"], result["retry"]) == (0, 1)
    assert _outcome(db) == ("pending", "unreachable")


def _backchannel_cli(database_url: str, *args: str):
    from click.testing import CliRunner

    from app.cli import cli
    from app.cli.commands import register

    register()
    env = {"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test",
           "ROSTER_APP__BASE_URL": "http://roster.test"}
    return CliRunner().invoke(cli, ["sso", "backchannel", *args], env=env)


def test_roster_sso_backchannel_without_a_provider_refuses_in_one_line(
        db, database_url, tenant, keys, web, sso_app):
    """Without [oidc_provider] (no signing key) `roster sso backchannel` queued the revoked
    session's logout, which nothing could sign or send, and printed `queued=1 sent=0` with
    exit 0. With a revoked session waiting it now says that one waits and cannot be signed
    here, exit 1, and queues nothing (it said "there are no back-channel logouts to send",
    which was not so)."""
    user, req, code = login_and_code(db, tenant, keys, web)
    exchange(web, code, req.verifier)
    _deprovision(db, user.id)
    result = _backchannel_cli(database_url)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        "Error: 1 revoked session(s) wait for a back-channel logout, which cannot be signed "
        "here: the OIDC provider is not configured (oidc_provider.signing_key_file is empty)"]
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert rows(db, "SELECT count(*) AS n FROM oidc_backchannel_logouts")[0].n == 0


@pytest.mark.parametrize("loop", [[], ["--loop", "--interval", "0.1"]])
def test_roster_sso_backchannel_without_a_provider_and_nothing_waiting_is_done(
        db, database_url, tenant, loop):
    """A deployment that does not run the OIDC provider has no back-channel logouts: the
    command said "Error: ... there are no back-channel logouts to send" with exit 1, a
    failure for a cron job or a supervisor each time. Nothing to send is not a failure:
    it says so, exit 0, also with --loop (which would never have anything to do)."""
    result = _backchannel_cli(database_url, *loop)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == [
        "nothing to send: the OIDC provider is not configured "
        "(oidc_provider.signing_key_file is empty)"]
