"""Worlds to break the controller in, over the in-memory store and over Table Storage on a
disk-backed Azurite (so storage can restart without losing acknowledged writes)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.azurite import Azurite, start_azurite
from shared.adapters.memory import InMemoryReleaseStore
from tests.faults.world import World


@pytest.fixture(scope="session")
def disk_azurite() -> Iterator[Azurite]:
    folder = Path(tempfile.mkdtemp(prefix="azurite-data-"))
    server = start_azurite(location=folder)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def table_world(server: Azurite) -> World:
    from shared.adapters.table_store import TableReleaseStore

    store = TableReleaseStore.from_connection_string(
        server.connection_string, prefix="f" + uuid.uuid4().hex[:12], retry_total=0
    )
    return World(store, restart_storage=server.restart)


@pytest.fixture(params=["memory", "azurite"])
def world(request: pytest.FixtureRequest) -> World:
    if request.param == "memory":
        return World(InMemoryReleaseStore())
    return table_world(request.getfixturevalue("disk_azurite"))


@pytest.fixture(autouse=True)
def quiet_controller_logs() -> Iterator[None]:
    """Fault runs make the controller log thousands of expected warnings; formatting them would
    cost more than the run itself. Assertions, not logs, decide these tests."""
    logger = logging.getLogger("release_controller")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
