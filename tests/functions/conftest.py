"""Handlers run exactly as the Functions host indexes them, over Azurite and the in-memory platform,
behind App Service authentication with the tests' release policy."""

from __future__ import annotations

import pytest

from shared import bootstrap
from shared.settings import Settings
from tests.builders import TEST_KEY, TEST_KEY_ID, harness


@pytest.fixture(scope="session")
def indexed():
    """The functions as the host sees them (get_functions() may run only once per app object)."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


@pytest.fixture
def app(table_store, azurite, table_prefix):
    """A composition root over real Azurite; the platform, probes and clock are in-memory fakes."""
    h = harness(store=table_store)
    settings = Settings.from_env(
        {
            "RELEASE_STORE_CONNECTION": azurite.connection_string,
            "RELEASE_STORE_TABLE_PREFIX": table_prefix,
            "WEBSITE_AUTH_ENABLED": "True",
            f"RELEASE_SIGNING_KEY_{TEST_KEY_ID}": TEST_KEY,
        }
    )
    parts = {"store": table_store, "policy_document": {"version": 1, "targets": [{"name": "tests"}]}}
    bootstrap.use(bootstrap.Container(settings=settings, service=h.service, parts=parts))
    try:
        yield h
    finally:
        bootstrap.use(None)
