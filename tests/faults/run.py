"""The long fault run: ``python -m tests.faults.run --scenarios 10000 --store both``.

Runs the stateful fault machine (``tests/faults/machine.py``) for the asked number of scenarios on
each store and prints what it covered. Exit code 0 means every invariant held in every step of
every scenario and every scenario settled; otherwise hypothesis prints the shrunk failing scenario.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.faults import machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=10_000, help="scenarios per store (default 10000)")
    parser.add_argument("--steps", type=int, default=40, help="maximum steps per scenario (default 40)")
    parser.add_argument("--store", choices=["memory", "azurite", "both"], default="both")
    parser.add_argument("--seed", type=int, default=None, help="explore other scenarios (default: fixed)")
    args = parser.parse_args(argv)
    logging.getLogger("release_controller").setLevel(logging.CRITICAL)
    stores = ["memory", "azurite"] if args.store == "both" else [args.store]
    status = 0
    for store in stores:
        machine.STATS = machine.RunStats()
        cls = machine.Interleavings if store == "memory" else machine.AzuriteInterleavings
        options = settings(
            max_examples=args.scenarios,
            stateful_step_count=args.steps,
            deadline=None,
            derandomize=args.seed is None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        started = time.monotonic()
        outcome = "no invariant violated"
        try:
            if args.seed is not None:
                from hypothesis import seed

                cls.TestCase.settings = options
                run_state_machine_as_test(seed(args.seed)(cls), settings=options)
            else:
                run_state_machine_as_test(cls, settings=options)
        except (AssertionError, ExceptionGroup) as exc:
            import traceback

            traceback.print_exception(exc)
            outcome = f"VIOLATION: {str(exc).splitlines()[0]}"
            status = 1
        elapsed = time.monotonic() - started
        stats = asdict(machine.STATS)
        print(
            f"{store}: {stats['scenarios']} scenarios, {stats['steps']} steps, {stats['releases']} releases, "
            f"{stats['faults']} faults, {stats['crashes']} crashes armed, {stats['restarts']} storage restarts, "
            f"at most {stats['calm_rounds_max']} calm ticks to settle; {elapsed:.0f} s; {outcome}\n"
            f"  releases ended: {dict(sorted(machine.STATS.outcomes.items()))}",
            flush=True,
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
