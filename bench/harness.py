"""Load generation and server processes shared by the benchmarks (not a benchmark itself).

A threaded keep-alive HTTP client with per-scenario latencies, and context managers that
start exactly one gunicorn, a throwaway database, or a whole Roster (fresh database, demo
directory and token) and stop exactly what they started.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ROSTER = str(Path(PY).with_name("roster"))
GUNICORN_CONF = str(ROOT / "config" / "gunicorn.conf.py")
CONCURRENCY = 8


# ---------------------------------------------------------------- load generation


class Client:
    """One keep-alive HTTP connection per thread."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port, self.headers = port, headers
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: object = None) -> tuple[int, object, float]:
        """Send one request; returns (status, parsed JSON or None, seconds)."""
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=data, headers=self.headers)
                response = self.conn.getresponse()
                raw = response.read()
            except (ConnectionError, http.client.HTTPException, TimeoutError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            elapsed = time.perf_counter() - started
            if response.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return response.status, (json.loads(raw) if raw else None), elapsed
        raise AssertionError("unreachable")


@dataclass
class Result:
    """Latencies and errors of one scenario."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    first_error: str = ""
    # CPU seconds the server's processes (gunicorn master and workers) used meanwhile.
    server_cpu: float | None = None

    @property
    def cpu_ms(self) -> float | None:
        """Server CPU per completed request, in ms: unlike req/s, barely moved by load."""
        if self.server_cpu is None or not self.latencies:
            return None
        return self.server_cpu * 1000 / len(self.latencies)

    @property
    def rps(self) -> float:
        """Completed requests per second of wall time."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        """The p-th percentile latency in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


Task = Callable[[Client, Callable[[str, int, object, float, tuple[int, ...]], None]], None]


def run_load(name: str, tasks: list[Task], port: int, headers: dict[str, str],
             seconds: float, concurrency: int = CONCURRENCY) -> Result:
    """Run tasks on ``concurrency`` threads until done or the time bound passes."""
    result = Result(name)
    lock = threading.Lock()
    position = iter(range(len(tasks)))
    deadline = time.monotonic() + seconds

    def record(what: str, status: int, body: object, elapsed: float,
               ok: tuple[int, ...]) -> None:
        with lock:
            result.latencies.append(elapsed)
            if status not in ok:
                result.errors += 1
                if not result.first_error:
                    result.first_error = f"{what}: {status} {json.dumps(body)[:300]}"

    def worker() -> None:
        client = Client(port, headers)
        while True:
            if time.monotonic() > deadline:
                result.stopped_early = True
                return
            with lock:
                index = next(position, None)
            if index is None:
                return
            try:
                tasks[index](client, record)
            except Exception as exc:  # a dead connection or bad JSON is an error, not a crash
                with lock:
                    result.errors += 1
                    result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    cpu_before = server_cpu_seconds(port)
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - started
    cpu_after = server_cpu_seconds(port)
    if cpu_before is not None and cpu_after is not None:
        result.server_cpu = cpu_after - cpu_before
    return result


# port -> gunicorn master pid, for the CPU accounting of the servers this module started.
_SERVERS: dict[int, int] = {}
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/PID/task/TID/children)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return tree


def server_cpu_seconds(port: int) -> float | None:
    """User + system CPU seconds of the server on ``port`` and its workers, if we started it."""
    master = _SERVERS.get(port)
    if master is None or not Path("/proc").is_dir():
        return None
    total = 0
    for pid in _process_tree(master):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)
    return total / _TICKS


def request_task(method: str, path: str, body: object = None, ok: tuple[int, ...] = (200,),
                 check: Callable[[object], bool] | None = None) -> Task:
    """A task of one request; ``check`` sees the parsed response and may call it wrong."""
    def task(client: Client, record: Callable[..., None]) -> None:
        status, data, elapsed = client.call(method, path, body)
        if check is not None and status in ok and not check(data):
            status = -status  # right status, wrong content: counted as an error
        record(f"{method} {path}", status, data, elapsed, ok)
    return task


# ---------------------------------------------------------------- processes


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's ROSTER_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    return {**env, **extra}


@contextmanager
def gunicorn(app_spec: str, env: dict[str, str], log: Path) -> Iterator[int]:
    """Serve ``app_spec`` with 2 gunicorn workers; stop exactly that server afterwards."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [PY, "-m", "gunicorn", "--config", GUNICORN_CONF, "--bind", f"127.0.0.1:{port}",
             "--workers", "2", app_spec],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(port, proc, log)
        _SERVERS[port] = proc.pid
        yield port
    finally:
        _SERVERS.pop(port, None)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"gunicorn exited; see {log}:\n{log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"server on port {port} did not become ready; see {log}")


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """A fresh SQLite file or a throwaway PostgreSQL (stopped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'roster.db'}"
        return
    out = subprocess.run([PY, "-m", "tests.pg_server", "start"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    url = re.search(r"ROSTER_TEST_PG_URL='([^']+)'", out)
    root = re.search(r"ROSTER_TEST_PG_DIR='([^']+)'", out)
    if not url or not root:
        sys.exit(f"could not start PostgreSQL: {out}")
    try:
        yield url.group(1)
    finally:
        subprocess.run([PY, "-m", "tests.pg_server", "stop", root.group(1)], cwd=ROOT,
                       check=False)


def line(r: Result) -> str:
    """One result as a table row."""
    note = " (time bound hit)" if r.stopped_early else ""
    errors = f"  errors {r.errors}: {r.first_error}" if r.errors else ""
    cpu = f"  cpu {r.cpu_ms:5.2f} ms/req" if r.cpu_ms is not None else ""
    return (f"{r.name:<44} {len(r.latencies):>6} req {r.rps:>8.1f} req/s  "
            f"p50 {r.pct(50):>7.1f}  p95 {r.pct(95):>7.1f}  p99 {r.pct(99):>7.1f} ms"
            f"{cpu}{note}{errors}")


# The CLI of this tree (``roster`` would be the installed one's): a worktree of another
# commit (bench/compare.py) migrates with its own migrations.
_TREE_CLI = [PY, "-c", "from app.cli import main; main()"]


def demo_token(env: dict[str, str]) -> str:
    """Migrate the database of ``env`` and create the demo directory; its SCIM token."""
    subprocess.run([*_TREE_CLI, "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    out = subprocess.run([*_TREE_CLI, "demo"], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    token = re.search(r"SCIM token:\s+(\S+)", out)
    if not token:
        sys.exit(f"roster demo printed no token: {out}")
    return token.group(1)


@contextmanager
def serve_roster(kind: str, **extra_env: str) -> Iterator[tuple[int, dict[str, str]]]:
    """A fresh migrated database with the demo directory, served by gunicorn (2 workers).

    Yields (port, SCIM headers with the bearer token). The per-token rate limit stays on
    (its counter write is part of every request) but is raised so it does not cap the
    measurement (the default is 1200/minute). The server log is kept in the temp directory.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"scim-bench-{kind}-"))
    try:
        with database(kind, tmp) as url:
            prom = tmp / "prometheus"
            prom.mkdir()
            env = clean_env(ROSTER_DATABASE__URL=url, PROMETHEUS_MULTIPROC_DIR=str(prom),
                            ROSTER_SIGNING__DEV_KEY_FILE=str(tmp / "signing_key.pem"),
                            ROSTER_RATELIMIT__SCIM="10000000/minute", **extra_env)
            headers = {"Authorization": f"Bearer {demo_token(env)}",
                       "Content-Type": "application/scim+json",
                       "Accept": "application/scim+json"}
            try:
                with gunicorn("app:create_app()", env, tmp / "gunicorn.log") as port:
                    yield port, headers
            finally:
                # Kept for reading errors (request ids in 500 answers point into it).
                kept = Path(tempfile.gettempdir()) / f"scim-bench-{kind}.log"
                shutil.copyfile(tmp / "gunicorn.log", kept)
                print(f"  server log: {kept}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
