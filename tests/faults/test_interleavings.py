"""The stateful fault run, bounded and seeded for the suite. The long run: ``make faults``."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.faults.machine import AzuriteInterleavings, Interleavings

# Enough to cover every rule many times in CI; FAULT_SCENARIOS raises it for a local deep run.
SCENARIOS = {"memory": int(os.environ.get("FAULT_SCENARIOS", "150")), "azurite": 15}


def bounded(scenarios: int) -> settings:
    return settings(
        max_examples=scenarios,
        stateful_step_count=40,
        deadline=None,
        derandomize=True,  # the same scenarios on every run: CI is repeatable
        suppress_health_check=list(HealthCheck),
    )


def test_random_interleavings_of_faults_keep_every_invariant_on_the_in_memory_store():
    run_state_machine_as_test(Interleavings, settings=bounded(SCENARIOS["memory"]))


@pytest.mark.azurite
def test_random_interleavings_of_faults_keep_every_invariant_on_table_storage():
    run_state_machine_as_test(AzuriteInterleavings, settings=bounded(SCENARIOS["azurite"]))
