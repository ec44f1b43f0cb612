"""Deprovisioning benchmark (issue 7): SCIM deactivation to revocation committed, and
revocation committed to webhook delivered, over real HTTP on loopback.

Roster runs under gunicorn (`roster serve`, 2 workers) and `roster worker` runs as its own
process with the default poll interval; a signature-verifying receiver (http.server) listens
on 127.0.0.1. Each of N users (with a grant, a login session and two tokens) is deactivated
by an Okta-style path-less PATCH active=false, one request at a time.

  received -> committed : client send time of the PATCH -> deprovision_records.
                          revocation_committed_at (stamped right after the commit)
  in-server             : the record's latency_ms: the request's arrival in Roster (stamped
                          first thing by request tracking, Actor.received_at) -> committed
  committed -> delivered: revocation_committed_at -> receiver's arrival of user.deprovisioned

Environment: DEPROV_BENCH_N=1000, DEPROV_BENCH_SECONDS=150 (time bound per database; stops
early and says so), DEPROV_BENCH_DBS=sqlite,postgresql. The load average is printed with
each line: every figure depends on it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from app.audit import Actor  # noqa: E402
from app.db import Database  # noqa: E402
from app.directory.directories import create_directory  # noqa: E402
from app.directory.organizations import add_unit, create_organization  # noqa: E402
from app.directory.tokens import issue_token  # noqa: E402
from app.events.signature import SIGNATURE_HEADER, verify  # noqa: E402
from app.mapping.catalog import load_catalog  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.models import Grant, Role, User  # noqa: E402
from app.models.sso import IssuedToken, LoginSession  # noqa: E402

ROSTER = str(Path(sys.executable).with_name("roster"))
SECRET = "bench-webhook-secret-0123456789"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
OFF = json.dumps({"schemas": [PATCH_OP],
                  "Operations": [{"op": "replace", "value": {"active": False}}]})
OPERATOR = Actor(type="operator", id="bench")


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(url: str, n: int) -> tuple[str, list[str]]:
    """Migrate, create org/directory/token, and N equipped users (bulk inserts)."""
    upgrade(url)
    db = Database(url)
    with db.transaction() as s:
        org = create_organization(s, "bench", "Bench", load_catalog(ROOT / "config" /
                                                                   "roles.toml"), OPERATOR)
        directory = create_directory(s, org, "okta", "okta", OPERATOR)
        _, token = issue_token(s, directory, OPERATOR, days=1, max_valid=2)
        unit = add_unit(s, org, "Purchasing", "department", None, OPERATOR)
        role_id = s.scalars(sa.select(Role.id).where(Role.organization_id == org.id)).first()
        org_id, dir_id, unit_id = org.id, directory.id, unit.id
    ids = [str(uuid.uuid4()) for _ in range(n)]
    sessions = [str(uuid.uuid4()) for _ in range(n)]
    now = datetime.now(UTC)
    with db.transaction() as s:
        s.execute(sa.insert(User), [
            {"id": i, "directory_id": dir_id, "organization_id": org_id, "user_name": f"u{k}",
             "external_id": f"x{k}", "active": True, "status": "active", "emails": [],
             "phone_numbers": [], "ims": [], "photos": [], "addresses": [],
             "entitlements": [], "roles": [], "x509_certificates": [], "extension_data": {},
             "version": 1, "created_at": now, "updated_at": now} for k, i in enumerate(ids)])
        s.execute(sa.insert(Grant), [
            {"id": str(uuid.uuid4()), "organization_id": org_id, "user_id": i,
             "unit_id": unit_id, "role_id": role_id, "parameters": {}, "source": "manual",
             "reason": {}, "created_at": now} for i in ids])
        s.execute(sa.insert(LoginSession), [
            {"id": sid, "organization_id": org_id, "user_id": i, "created_at": now}
            for i, sid in zip(ids, sessions, strict=True)])
        s.execute(sa.insert(IssuedToken), [
            {"id": str(uuid.uuid4()), "organization_id": org_id, "user_id": i,
             "session_id": sid, "client_id": "portal", "token_type": kind, "scope": "",
             "token_hash": hashlib.sha256(uuid.uuid4().bytes).hexdigest(), "issued_at": now}
            for i, sid in zip(ids, sessions, strict=True) for kind in ("access", "refresh")])
    db.dispose()
    return token, ids


class Receiver:
    """Loopback webhook receiver: verifies the signature, notes first arrival per event id."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.bad = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.time()
                ok = verify(SECRET, self.headers.get(SIGNATURE_HEADER, ""), body)
                with outer.lock:
                    if ok:
                        outer.arrived.setdefault(json.loads(body)["id"], now)
                    else:
                        outer.bad += 1
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A roster subprocess in its own process group (so it is stopped as a whole)."""
    log = open(Path(tempfile.gettempdir()) / f"deprovision-bench-{args[0]}.log", "wb")  # noqa: SIM115
    return subprocess.Popen([ROSTER, *args], env=env, cwd=ROOT, stdout=log, stderr=log,
                            start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then wait."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_ready(port: int, seconds: float = 180) -> None:
    """Poll /healthz until the server answers."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    sys.exit("roster serve did not become ready (see /tmp/deprovision-bench-serve.log)")


def run(name: str, url: str, n: int, seconds: float) -> dict[str, object]:
    """Seed, serve, deactivate N users, wait for the webhooks, and compute the figures."""
    began = time.monotonic()
    token, ids = seed(url, n)
    print(f"  {name}: seeded {n} users in {time.monotonic() - began:.0f} s", flush=True)
    receiver = Receiver()
    port = free_port()
    env = {**os.environ, "ROSTER_DATABASE__URL": url, "ROSTER_LOGGING__LEVEL": "ERROR",
           "ROSTER_APP__ENV": "development", "ROSTER_WEBHOOKS__URLS": receiver.url,
           "ROSTER_WEBHOOKS__SECRET": SECRET,
           "ROSTER_SIGNING__DEV_KEY_FILE": str(Path(tempfile.gettempdir()) / "bench-key.pem")}
    server = start(["serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"], env)
    worker = start(["worker"], env)
    sent: dict[str, datetime] = {}
    try:
        wait_ready(port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {token}",
                   "Content-Type": "application/scim+json", "User-Agent": "Okta SCIM Client"}
        began = time.monotonic()
        for user_id in ids:
            if time.monotonic() - began > seconds:
                print(f"  {name}: time bound reached after {len(sent)} deactivations")
                break
            sent[user_id] = datetime.now(UTC)
            conn.request("PATCH", f"/scim/v2/Users/{user_id}", body=OFF, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                sys.exit(f"PATCH answered {response.status}")
        engine = sa.create_engine(url)
        query = sa.text("SELECT user_id, event_id, revocation_committed_at, latency_ms "
                        "FROM deprovision_records")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with engine.connect() as c:
                records = list(c.execute(query))
            if len(records) >= len(sent) and all(r.event_id in receiver.arrived
                                                 for r in records):
                break
            time.sleep(0.5)
        engine.dispose()
    finally:
        stop(worker)
        stop(server)
        receiver.server.shutdown()
    committed = {r.user_id: _aware(r.revocation_committed_at) for r in records}
    to_commit = [(committed[u] - t).total_seconds() * 1000 for u, t in sent.items()
                 if committed.get(u)]
    to_deliver = [(receiver.arrived[r.event_id] - _aware(r.revocation_committed_at)
                   .timestamp()) * 1000 for r in records if r.event_id in receiver.arrived]
    in_server = [r.latency_ms for r in records if r.latency_ms is not None]
    return {"db": name, "n": len(sent), "commit_p50": pct(to_commit, 50),
            "commit_p95": pct(to_commit, 95), "server_p50": pct(in_server, 50),
            "server_p95": pct(in_server, 95), "deliver_p50": pct(to_deliver, 50),
            "deliver_p95": pct(to_deliver, 95), "delivered": len(to_deliver),
            "bad_signatures": receiver.bad}


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite returns text through a raw query
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def main() -> None:
    """Run on each database and print one line of figures per database."""
    n = int(os.environ.get("DEPROV_BENCH_N", "1000"))
    seconds = float(os.environ.get("DEPROV_BENCH_SECONDS", "150"))
    dbs = os.environ.get("DEPROV_BENCH_DBS", "sqlite,postgresql").split(",")
    results = []
    for name in dbs:
        load_before = os.getloadavg()[0]
        if name == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                results.append(run(name, f"sqlite:///{tmp}/bench.db", n, seconds))
        else:
            from tests.pg_server import start as pg_start
            from tests.pg_server import stop as pg_stop
            url, pg_root = pg_start()
            try:
                results.append(run(name, url, n, seconds))
            finally:
                pg_stop(pg_root)
        results[-1]["load"] = f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"
    for r in results:
        print(f"{r['db']:<10} deactivations={r['n']}  received->committed p50 "
              f"{r['commit_p50']:.1f} ms p95 {r['commit_p95']:.1f} ms  (in-server "
              f"p50 {r['server_p50']:.1f} p95 {r['server_p95']:.1f})  committed->delivered "
              f"p50 {r['deliver_p50']:.0f} ms p95 {r['deliver_p95']:.0f} ms  "
              f"({r['delivered']} delivered, {r['bad_signatures']} bad signatures; "
              f"load average {r['load']})")


if __name__ == "__main__":
    main()
