"""The long fault run: ``python -m tests.faults.run --scenarios 10000 --store both``.

Runs the stateful fault machine (``tests/faults/machine.py``) for the asked number of scenarios on
each store and prints what it covered. Exit code 0 means every invariant held in every step of
every scenario and every scenario settled; otherwise hypothesis prints the shrunk failing scenario.

``--shards K --parallel P`` splits each store's scenarios into K seeded runs (seeds S+1 … S+K, S
being ``--seed``, 0 by default), P of them at once in processes of their own (each with its own
Azurite), and prints every shard's figures and their sum: the way to use several cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.faults import machine

STATS_PREFIX = "fault-run-stats "


def summary(store: str, stats: dict[str, Any], elapsed: float, outcome: str) -> str:
    return (
        f"{store}: {stats['scenarios']} scenarios, {stats['steps']} steps, {stats['releases']} releases, "
        f"{stats['faults']} faults, {stats['crashes']} crashes armed, {stats['restarts']} storage restarts, "
        f"at most {stats['calm_rounds_max']} calm ticks to settle; {elapsed:.0f} s; {outcome}\n"
        f"  releases ended: {dict(sorted(stats['outcomes'].items()))}\n"
        f"  rollouts ended: {dict(sorted(stats.get('rollouts', {}).items()))}"
    )


def run_store(store: str, scenarios: int, steps: int, seed: int | None) -> tuple[dict[str, Any], float, str]:
    """One run of the machine in this process: its figures, its time and its outcome."""
    machine.STATS = machine.RunStats()
    cls = machine.Interleavings if store == "memory" else machine.AzuriteInterleavings
    options = settings(
        max_examples=scenarios,
        stateful_step_count=steps,
        deadline=None,
        derandomize=seed is None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    started = time.monotonic()
    outcome = "no invariant violated"
    try:
        if seed is not None:
            from hypothesis import seed as with_seed

            cls.TestCase.settings = options
            run_state_machine_as_test(with_seed(seed)(cls), settings=options)
        else:
            run_state_machine_as_test(cls, settings=options)
    except (AssertionError, ExceptionGroup) as exc:
        import traceback

        traceback.print_exception(exc)
        outcome = f"VIOLATION: {str(exc).splitlines()[0]}"
    stats = {  # asdict garbles a Counter
        **asdict(machine.STATS),
        "outcomes": dict(machine.STATS.outcomes),
        "rollouts": dict(machine.STATS.rollouts),
    }
    return stats, time.monotonic() - started, outcome


def run_shards(store: str, args: argparse.Namespace) -> bool:
    """The store's scenarios in ``--shards`` seeded processes, ``--parallel`` at once. True when all held."""
    per_shard = -(-args.scenarios // args.shards)
    base = args.seed or 0

    def shard(n: int) -> tuple[int, dict[str, Any] | None, str]:
        command = [sys.executable, "-m", "tests.faults.run", "--store", store, "--scenarios", str(per_shard)]
        command += ["--steps", str(args.steps), "--seed", str(base + n), "--stats-json"]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith(STATS_PREFIX)]
        stats = json.loads(lines[-1][len(STATS_PREFIX) :]) if lines else None
        return n, stats, done.stdout + done.stderr

    started = time.monotonic()
    total: dict[str, Any] = {**asdict(machine.RunStats()), "outcomes": Counter(), "rollouts": Counter()}
    held = True
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        for n, stats, output in pool.map(shard, range(1, args.shards + 1)):
            if stats is None or stats["outcome"] != "no invariant violated":
                held = False
                print(output, flush=True)
            if stats is None:
                print(f"{store} shard {n} (seed {base + n}): no figures; it failed", flush=True)
                continue
            figures = summary(store, stats, stats["elapsed"], stats["outcome"])
            print(f"shard {n} (seed {base + n}) {figures}", flush=True)
            for key in ("scenarios", "steps", "releases", "faults", "crashes", "restarts"):
                total[key] += stats[key]
            total["calm_rounds_max"] = max(total["calm_rounds_max"], stats["calm_rounds_max"])
            total["outcomes"].update(stats["outcomes"])
            total["rollouts"].update(stats.get("rollouts", {}))
    outcome = "no invariant violated" if held else "VIOLATION (see the shard above)"
    print(f"all {args.shards} shards, " + summary(store, total, time.monotonic() - started, outcome), flush=True)
    return held


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=10_000, help="scenarios per store (default 10000)")
    parser.add_argument("--steps", type=int, default=40, help="maximum steps per scenario (default 40)")
    parser.add_argument("--store", choices=["memory", "azurite", "both"], default="both")
    parser.add_argument("--seed", type=int, default=None, help="explore other scenarios (default: fixed)")
    parser.add_argument("--shards", type=int, default=1, help="split each store's run into this many seeded runs")
    parser.add_argument("--parallel", type=int, default=1, help="shards run at once (default 1)")
    parser.add_argument("--stats-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.getLogger("release_controller").setLevel(logging.CRITICAL)
    stores = ["memory", "azurite"] if args.store == "both" else [args.store]
    status = 0
    for store in stores:
        if args.shards > 1:
            status |= 0 if run_shards(store, args) else 1
            continue
        stats, elapsed, outcome = run_store(store, args.scenarios, args.steps, args.seed)
        print(summary(store, stats, elapsed, outcome), flush=True)
        if args.stats_json:
            print(STATS_PREFIX + json.dumps({**stats, "elapsed": elapsed, "outcome": outcome}), flush=True)
        if outcome.startswith("VIOLATION"):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
