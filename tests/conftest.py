"""Shared fixtures. Azurite is real: started once per test process on a free port, stopped by PID."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devstack.azurite import Azurite, start_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = start_azurite()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def table_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def table_store(azurite: Azurite, table_prefix: str):
    from shared.adapters.table_store import TableReleaseStore

    return TableReleaseStore.from_connection_string(azurite.connection_string, prefix=table_prefix)
