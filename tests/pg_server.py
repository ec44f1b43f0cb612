"""Start and stop a throwaway PostgreSQL for the test suite.

``python -m tests.pg_server start`` prints shell assignments (ROSTER_TEST_PG_URL,
ROSTER_TEST_PG_DIR); ``stop DIR`` stops that server and removes its directory.
PostgreSQL refuses to run as root, so as root the server runs as an unprivileged user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

TEST_USER = "roster-pg"


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server binary (PATH first, then Debian's versioned dirs)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        sys.exit(f"pg_server: {name} not found; install postgresql (script/bootstrap --test)")
    return candidates[-1]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (never the default 5432)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _runas_prefix() -> list[str]:
    if os.getuid() != 0:
        return []
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        TEST_USER], check=True)
    return ["runuser", "-u", TEST_USER, "--"]


def start() -> tuple[str, str]:
    """initdb + pg_ctl start; returns (url, data directory root)."""
    root = tempfile.mkdtemp(prefix="roster-pg-")
    prefix = _runas_prefix()
    if prefix:
        pw = pwd.getpwnam(TEST_USER)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, sock, log = Path(root, "data"), Path(root, "sock"), Path(root, "log")
    port = free_port()
    # cwd=root: the unprivileged user may not be able to enter the caller's directory.
    subprocess.run([*prefix, pg_bin("initdb"), "-D", str(data), "-U", "roster", "-A", "trust",
                    # A UTF-8 locale: lower() then folds every letter, not only A-Z (as in
                    # production; README, PostgreSQL).
                    "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], check=True,
                   stdout=subprocess.DEVNULL, cwd=root)
    subprocess.run([*prefix, "mkdir", "-p", str(sock)], check=True, cwd=root)
    opts = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sock} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    subprocess.run([*prefix, pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts,
                    "-w", "-t", "60", "start"], check=True, stdout=subprocess.DEVNULL, cwd=root)
    return f"postgresql+psycopg://roster@127.0.0.1:{port}/postgres", root


def start_pgbouncer(server_url: str) -> tuple[str, str, subprocess.Popen[bytes]]:
    """A PgBouncer in transaction pooling mode in front of ``server_url``'s server, with up to
    four server connections per database (so consecutive transactions of one client land on
    different ones); returns (its URL, with the same database, its directory, the process).
    PgBouncer refuses to run as root, so as root it runs as the test user, like PostgreSQL."""
    import time

    from sqlalchemy.engine import make_url

    server = make_url(server_url)
    root = tempfile.mkdtemp(prefix="roster-pgbouncer-")
    prefix = _runas_prefix()
    if prefix:
        pw = pwd.getpwnam(TEST_USER)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    port = free_port()
    Path(root, "users.txt").write_text(f'"{server.username}" ""\n')
    Path(root, "pgbouncer.ini").write_text(f"""[databases]
* = host={server.host} port={server.port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root}/users.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
logfile = {root}/pgbouncer.log
pidfile = {root}/pgbouncer.pid
""")
    for name in ("users.txt", "pgbouncer.ini"):
        os.chmod(Path(root, name), 0o644)
    # Debian installs it in /usr/sbin, which an unprivileged user's PATH may lack.
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if binary is None:
        sys.exit("pg_server: pgbouncer not found; install pgbouncer (script/bootstrap --test)")
    process = subprocess.Popen([*prefix, binary, f"{root}/pgbouncer.ini"], cwd=root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        if process.poll() is not None:
            break
        time.sleep(0.05)
    else:
        process.kill()
    if process.poll() is not None:
        log = Path(root, "pgbouncer.log")
        raise RuntimeError(f"pgbouncer did not start: {log.read_text() if log.exists() else ''}")
    url = server.set(port=port).render_as_string(hide_password=False)
    return url, root, process


def stop_pgbouncer(root: str, process: subprocess.Popen[bytes]) -> None:
    """Stop that PgBouncer (SIGTERM to its own process, not runuser) and remove its directory."""
    pid = Path(root, "pgbouncer.pid")
    try:
        os.kill(int(pid.read_text().strip()), 15)
    except (OSError, ValueError):
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    shutil.rmtree(root, ignore_errors=True)


def restart(root: str) -> None:
    """Restart the server (fast mode: every client connection is cut), same port and options."""
    subprocess.run([*_runas_prefix(), pg_bin("pg_ctl"), "-D", str(Path(root, "data")), "-m",
                    "fast", "-w", "-t", "60", "restart"], check=True, stdout=subprocess.DEVNULL,
                   cwd=root)


def stop(root: str) -> None:
    """Stop the server (fast mode) and remove its directory."""
    data = Path(root, "data")
    if data.exists():
        subprocess.run([*_runas_prefix(), pg_bin("pg_ctl"), "-D", str(data), "-m", "fast",
                        "-w", "stop"], check=False, stdout=subprocess.DEVNULL, cwd="/")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["start"]:
        url, root = start()
        print(f"export ROSTER_TEST_PG_URL='{url}' ROSTER_TEST_PG_DIR='{root}'")
    elif sys.argv[1:2] == ["stop"] and len(sys.argv) == 3:
        stop(sys.argv[2])
    else:
        sys.exit("usage: python -m tests.pg_server start | stop DIR")
