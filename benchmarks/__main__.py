"""Run every benchmark: python -m benchmarks [name ...]"""

from __future__ import annotations

import importlib
import sys

ALL = [
    "cold_start",
    "first_answer",
    "intake",
    "ingestion",
    "first_arm",
    "round_trips",
    "tick",
    "scale_out",
    "detection",
    "rollback_latency",
]


def main(argv: list[str]) -> None:
    for name in argv or ALL:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}: {module.__doc__.strip().splitlines()[0]}")
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
