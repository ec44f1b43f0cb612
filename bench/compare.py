"""Compare Roster builds in alternating rounds: SCIM creates or lookups under gunicorn.

    .venv/bin/python bench/compare.py [--mode create|lookup] [--rounds N] [--requests N] \\
        [--database sqlite|postgresql] VARIANT [VARIANT ...]

A VARIANT is a source tree (the repository, or a git worktree of another commit: ``git
worktree add /tmp/old HEAD~1``), optionally followed by ``|`` and settings for that run:
``'.|ROSTER_RECORDER__ENABLED=false'``. The word ``ceiling`` is bench/ceiling_app.py (inserts
for creates, selects for lookups, on the same warm-up), and every build's median is then
also given as a share of the ceiling's, the figure issue 4's targets name.
``ceiling-writes`` is the same app doing, per create, the writes a Roster create cannot do
without (the row, a hash-chained audit record, an outbox event; its lookups are the
ceiling's): shares of it are given too. Every tree is
served by its own bench/harness.py (its code, its gunicorn config; 2 workers, concurrency 8)
with this environment's Python, on a fresh SQLite file or a throwaway PostgreSQL
(tests/pg_server.py) per round.

On a small shared machine one build can measure 10 % apart from itself between two runs, so
a single run of each says little about a change of a few percent. Here the builds take
turns, round after round, each round on a fresh database after 1,000 creates of warm-up,
and the medians are compared (bench/README.md, session 9). Every other round runs them in
reverse order (session 14: with a fixed order, the first build won every round on a
machine that slowed down through the afternoon).
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from scim_bench import quoted, user_name, user_payload

WARM_UP = 1000
CEILING = "ceiling"
# Each ceiling variant and the path its creates are posted to (bench/ceiling_app.py).
CEILINGS = {CEILING: "/items", "ceiling-writes": "/items/audited"}


def _harness(tree: Path, index: int) -> ModuleType:
    # Each tree's own harness: its ROOT decides which code gunicorn serves.
    spec = importlib.util.spec_from_file_location(f"harness_{index}",
                                                  tree / "bench" / "harness.py")
    if spec is None or spec.loader is None:
        sys.exit(f"compare: no bench/harness.py in {tree}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _measure(harness: ModuleType, port: int, headers: dict[str, str], mode: str,
             requests: int, *, create: str, lookup: Callable[[str], str]) -> tuple[float, float]:
    """Warm up with creates, then time ``requests`` creates or lookups by userName."""
    harness.run_load("warm-up", [harness.request_task("POST", create, user_payload(i), (201,))
                                 for i in range(WARM_UP)], port, headers, 600)
    if mode == "create":
        tasks = [harness.request_task("POST", create, user_payload(i), (201,))
                 for i in range(WARM_UP, WARM_UP + requests)]
    else:
        tasks = [harness.request_task("GET", lookup(user_name(random.randrange(WARM_UP))),
                                      None, (200,)) for _ in range(requests)]
    result = harness.run_load(mode, tasks, port, headers, 600)
    if result.errors:
        sys.exit(f"compare: {result.errors} failed requests: {result.first_error}")
    return result.rps, result.cpu_ms


def _round(harness: ModuleType, settings: dict[str, str], mode: str, requests: int,
           database: str) -> tuple[float, float]:
    with harness.serve_roster(database, **settings) as (port, headers):
        return _measure(harness, port, headers, mode, requests, create="/scim/v2/Users",
                        lookup=lambda name: "/scim/v2/Users?filter=" + quoted(
                            f'userName eq "{name}"'))


def _ceiling_round(mode: str, requests: int, create: str) -> tuple[float, float]:
    """One round of bench/ceiling_app.py on a fresh SQLite file, after the same warm-up."""
    harness = _harness(Path(__file__).resolve().parents[1], -1)
    tmp = Path(tempfile.mkdtemp(prefix="compare-ceiling-"))
    try:
        (tmp / "prometheus").mkdir()
        env = harness.clean_env(CEILING_DB=str(tmp / "ceiling.db"),
                                PROMETHEUS_MULTIPROC_DIR=str(tmp / "prometheus"),
                                PYTHONPATH=str(harness.ROOT / "bench"))
        with harness.gunicorn("ceiling_app:create_app()", env, tmp / "gunicorn.log") as port:
            return _measure(harness, port, {"Content-Type": "application/json"}, mode,
                            requests, create=create,
                            lookup=lambda name: "/items?name=" + quoted(name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    """Parse the variants, run the rounds, print each round and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", metavar="VARIANT",
                        help="a source tree (this repository or a git worktree), optionally "
                             "followed by '|NAME=VALUE,...' settings for its runs")
    parser.add_argument("--mode", choices=("create", "lookup"), default="create")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    runs: list[tuple[str, ModuleType, dict[str, str]]] = []
    for index, variant in enumerate(args.variants):
        if variant in CEILINGS:
            runs.append((variant, None, {}))  # type: ignore[arg-type]
            continue
        tree, _, extra = variant.partition("|")
        settings = dict(item.split("=", 1) for item in extra.split(",") if item)
        runs.append((variant, _harness(Path(tree).resolve(), index), settings))
    figures: dict[str, list[tuple[float, float]]] = {variant: [] for variant, _, _ in runs}
    for number in range(1, args.rounds + 1):
        # Every other round runs the variants in reverse: a machine that slows down (or
        # speeds up) through a comparison would otherwise always favour the first one.
        for variant, harness, settings in (runs if number % 2 else runs[::-1]):
            rps, cpu = (_ceiling_round(args.mode, args.requests, CEILINGS[variant])
                        if variant in CEILINGS
                        else _round(harness, settings, args.mode, args.requests, args.database))
            figures[variant].append((rps, cpu))
            print(f"round {number}  {variant}: {rps:7.0f} req/s  {cpu:.3f} ms server CPU/req",
                  flush=True)
    print(f"== {args.mode} on {args.database}, {args.rounds} rounds of {args.requests} "
          "(median, then every round)")
    ceilings = {name: statistics.median(rps for rps, _ in figures[name])
                for name in CEILINGS if name in figures}
    for variant, rounds in figures.items():
        rates = sorted(rps for rps, _ in rounds)
        cpu = statistics.median(c for _, c in rounds)
        share = "".join(f"  = {100 * statistics.median(rates) / rate:.1f} % of {name}"
                        for name, rate in ceilings.items()
                        if rate and variant not in CEILINGS)
        print(f"  {variant}: {statistics.median(rates):7.0f} req/s  {cpu:.3f} ms CPU/req  "
              f"({', '.join(f'{r:.0f}' for r in rates)}){share}")
        if variant not in CEILINGS:
            for name in ceilings:
                print(f"      each round's share of {name}: "
                      f"{_round_shares(rounds, figures[name])}")


def _round_shares(rounds: list[tuple[float, float]],
                  ceiling: list[tuple[float, float]]) -> str:
    """A build's rate over the ceiling's in the same round, round by round, and their
    median: rounds minutes apart ran on a machine of another speed (bench/README.md,
    session 27), so a share within one round is steadier than a share of two medians."""
    shares = [100 * rps / top for (rps, _), (top, _) in zip(rounds, ceiling, strict=True)
              if top]
    listed = ", ".join(f"{s:.1f}" for s in shares)
    return f"median {statistics.median(shares):.1f} % ({listed})" if shares else "none"


if __name__ == "__main__":
    main()
