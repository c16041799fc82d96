"""Run in a process of its own by test_telemetry.py (OpenTelemetry's providers are process-wide):
telemetry configured from APPLICATIONINSIGHTS_CONNECTION_STRING, then a bad canary rolled back on
the App Service emulator with its releases on Azurite, then everything buffered exported."""

from __future__ import annotations

import logging
import os
import sys

from shared import telemetry


def main() -> int:
    assert telemetry.configure(), "APPLICATIONINSIGHTS_CONNECTION_STRING is not set"
    logging.getLogger("release_controller").setLevel(logging.INFO)

    from devstack.appservice import AppServiceEmulator
    from shared.adapters.memory import FakeClock
    from shared.adapters.table_store import TableReleaseStore
    from tests.e2e.conftest import bad_canary_event, build_e2e, emulator_config

    clock = FakeClock()
    store = TableReleaseStore.from_connection_string(os.environ["PROBE_STORE"], prefix=os.environ["PROBE_PREFIX"])
    with AppServiceEmulator(emulator_config(clock)) as emulator:
        e2e = build_e2e(emulator, store, clock)
        try:
            doc = bad_canary_event()
            release_id = e2e.submit(doc)
            e2e.until(release_id, lambda r: r.is_final, seconds=60)
            print(e2e.phase(release_id).value)
        finally:
            e2e.http.close()
    telemetry.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
