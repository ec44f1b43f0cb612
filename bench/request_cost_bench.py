"""What one SCIM request costs inside Roster, without HTTP, load or other processes.

Runs the app in-process (Flask test client) on a fresh SQLite file with the demo directory:
Okta-style creates and `userName eq` lookups, one at a time, and prints the CPU time per
request (minimum and median over batches). Neither gunicorn nor the load client is in the
figure, so it isolates Roster's own work; scim_bench.py measures the whole server.

On a shared VM CPU time swings with the neighbours. `--instructions` counts instructions
instead (valgrind's callgrind, from Debian's `valgrind` package): the same code gives the
same count within about 1 % for lookups (creates: ~5 %, background flush threads), whatever
the machine is doing. It runs this script twice under callgrind, with a small and a large
number of requests, and prints the difference per request, so set-up does not count. There
the flight recorder writes its batches by count (200 records), as a loaded worker does, not
every 0.2 s (a few records per batch at callgrind's speed).

  .venv/bin/python bench/request_cost_bench.py [lookup|create ...] [--instructions]

Sizes: REQUEST_COST_USERS (1000 users before lookups), REQUEST_COST_REQUESTS (3000).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from harness import PY, clean_env, demo_token  # noqa: E402
from scim_bench import quoted, user_name, user_payload  # noqa: E402

MODES = ("lookup", "create")
BATCH = 300
WARM_UP = 20


def _app(tmp: Path) -> tuple[object, dict[str, str]]:
    """A migrated SQLite file with the demo directory, the app on it and SCIM headers."""
    env = clean_env(ROSTER_DATABASE__URL=f"sqlite:///{tmp / 'roster.db'}",
                    ROSTER_SIGNING__DEV_KEY_FILE=str(tmp / "signing_key.pem"),
                    ROSTER_RATELIMIT__SCIM="10000000/minute")
    token = demo_token(env)
    os.environ.update({k: v for k, v in env.items() if k.startswith("ROSTER_")})
    # The access log line stays part of each request's cost, but is written nowhere.
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    from app import create_app

    if os.environ.get("REQUEST_COST_FLUSH_BY_COUNT"):
        # Under callgrind a request takes ~50 times as long, so the recorder's 0.2 s timer
        # would write batches of a few records (a BEGIN and COMMIT each); a loaded worker
        # writes ~100 at a time. Written by count (FLUSH_RECORDS) instead, as under load.
        from app.scim import recorder

        recorder.FLUSH_SECONDS = 3600.0
    headers = {"Authorization": f"Bearer {token}",
               "Content-Type": "application/scim+json"}
    return create_app(), headers


def _requests(mode: str, client: object, headers: dict[str, str], users: int,
              count: int) -> list[Callable[[], None]]:
    """Set the database up for ``mode`` and return ``count`` requests to time."""
    def create(i: int) -> Callable[[], None]:
        def run() -> None:
            response = client.post("/scim/v2/Users", json=user_payload(i),  # type: ignore[attr-defined]
                                   headers=headers)
            assert response.status_code == 201, response.data
        return run

    def lookup(i: int) -> Callable[[], None]:
        path = "/scim/v2/Users?filter=" + quoted(f'userName eq "{user_name(i)}"')

        def run() -> None:
            response = client.get(path, headers=headers)  # type: ignore[attr-defined]
            assert response.status_code == 200, response.data
            assert response.get_json()["totalResults"] == 1
        return run

    existing = users if mode == "lookup" else 200
    for i in range(existing):
        create(i)()
    if mode == "create":
        return [create(existing + i) for i in range(count)]
    return [lookup(random.randrange(users)) for _ in range(count)]


def measure(mode: str, users: int, count: int) -> tuple[float, float]:
    """(minimum, median) CPU microseconds per request over batches of BATCH requests."""
    tmp = Path(tempfile.mkdtemp(prefix="request-cost-"))
    try:
        app, headers = _app(tmp)
        client = app.test_client()  # type: ignore[attr-defined]
        runs = _requests(mode, client, headers, users, count + WARM_UP)
        for run in runs[:WARM_UP]:  # warm the caches (compiled statements, imports)
            run()
        runs = runs[WARM_UP:]
        per_request = []
        for start in range(0, len(runs), BATCH):
            batch = runs[start:start + BATCH]
            began = time.process_time()
            for run in batch:
                run()
            per_request.append((time.process_time() - began) / len(batch) * 1e6)
        per_request.sort()
        return per_request[0], per_request[len(per_request) // 2]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def instructions(mode: str, users: int, small: int = 100, large: int = 400) -> int:
    """Instructions per request: callgrind totals of two runs, differenced."""
    if not shutil.which("valgrind"):
        sys.exit("--instructions needs valgrind (apt-get install valgrind)")
    totals = []
    for count in (small, large):
        with tempfile.TemporaryDirectory() as out:
            done = subprocess.run(
                ["valgrind", "--tool=callgrind", "--cache-sim=no",
                 f"--callgrind-out-file={out}/callgrind.out", PY, __file__, mode],
                env={**os.environ, "REQUEST_COST_FLUSH_BY_COUNT": "1",
                     "REQUEST_COST_USERS": str(users),
                     "REQUEST_COST_REQUESTS": str(count), "REQUEST_COST_BATCH": str(count)},
                capture_output=True, text=True, errors="replace", check=False)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode or not found:
            sys.exit(f"callgrind run failed:\n{done.stderr[-2000:]}")
        totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) // (large - small)


def main() -> None:
    """Print the cost per request of each mode named (default: both)."""
    global BATCH
    args = sys.argv[1:]
    modes = [a for a in args if a in MODES] or list(MODES)
    if len(modes) > 1:
        # One process per mode: an app's settings and engine belong to its process.
        flags = [a for a in args if a not in MODES]
        for mode in modes:
            subprocess.run([PY, __file__, mode, *flags], check=True)
        return
    users = int(os.environ.get("REQUEST_COST_USERS", 1000))
    count = int(os.environ.get("REQUEST_COST_REQUESTS", 3000))
    BATCH = int(os.environ.get("REQUEST_COST_BATCH", BATCH))
    for mode in modes:
        if "--instructions" in args:
            per = instructions(mode, min(users, 100))
            print(f"{mode:<7} {per:>12,} instructions/request (callgrind, 300 requests)",
                  flush=True)
        else:
            low, median = measure(mode, users, count)
            print(f"{mode:<7} CPU {low:7.0f} us/request (min of batches), {median:7.0f} "
                  f"median, {count} requests", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception:
        sys.stderr = sys.__stderr__  # the app's log went to /dev/null; a failure must not
        raise
