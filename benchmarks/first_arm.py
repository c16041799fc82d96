"""Controller overhead: time from a release event reaching the Service Bus handler to the first ARM
request it causes, against the storage round trips that must come first.

The handler verifies the event's signature, checks the policy, creates the release (three round
trips on Azurite) and starts it at once (one more read), then reads the slots over ARM: the App
Service emulator over TLS through the real azure-mgmt-web adapter records when that first request
arrives. Baselines, measured in the same run: one Azurite point read, and one bare ARM GET through
the same adapter. Target: under 50 ms.

    python -m benchmarks first_arm
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from azure.functions.servicebus import ServiceBusMessage

from devstack.appservice import AppServiceEmulator, Timings
from devstack.azurite import start_azurite
from shared import bootstrap
from shared.adapters.memory import FakeClock
from shared.adapters.table_store import TableReleaseStore
from shared.authority.proofs import sign
from shared.domain.model import Target
from shared.settings import Settings
from shared.triggers.events import release_events
from tests.builders import SUBSCRIPTION, TEST_KEY, TEST_KEY_ID, body
from tests.e2e.conftest import RG, build_e2e, canary_event, emulator_config, sites_named

EVENTS = 20


class Stamped(list):  # type: ignore[type-arg]
    """The emulator's ARM request log, with the time each request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: Any) -> None:
        self.times.append(time.perf_counter())
        super().append(item)


def message(site: str) -> ServiceBusMessage:
    doc = canary_event(release_id=f"{site}-2.0.0", version="2.0.0")
    doc["target"] = {"subscriptionId": SUBSCRIPTION, "resourceGroup": RG, "site": site, "slot": "staging"}
    raw = body(doc)
    return ServiceBusMessage(
        body=raw,
        message_id=f"{site}-2.0.0",
        delivery_count=1,
        session_id=site,
        application_properties={"releaseSignature": sign(raw, TEST_KEY), "releaseKeyId": TEST_KEY_ID},
        user_properties={},
    )


def main() -> None:
    azurite = start_azurite()
    names = [f"contoso-first-{i:02d}" for i in range(EVENTS + 1)]
    sites = sites_named(names)
    try:
        clock = FakeClock()
        config = emulator_config(clock, sites=sites)
        config.timings = Timings.fast()
        with AppServiceEmulator(config) as emulator:
            store = TableReleaseStore.from_connection_string(azurite.connection_string, prefix="firstarm")
            built = build_e2e(emulator, store, clock)
            service, platform = built.service, built.platform
            settings = Settings.from_env({"RELEASE_STORE_CONNECTION": azurite.connection_string})
            bootstrap.use(bootstrap.Container(settings=settings, service=service, parts={"store": store}))
            stamped = Stamped()
            emulator.cloud.arm_requests = stamped
            release_events(message(names[0]))  # clients, tables, token and TLS sessions warm

            reads: list[float] = []
            for n in range(EVENTS):
                start = time.perf_counter()
                store.load_site(f"nope-{n}")
                reads.append(time.perf_counter() - start)
            arm: list[float] = []
            target = Target(SUBSCRIPTION, RG, names[0], "staging")
            for _ in range(EVENTS):  # (one observe is several ARM requests; the first is what counts below)
                start = time.perf_counter()
                platform.observe(target, swap_token=None, probe_staging=False)
                arm.append(time.perf_counter() - start)
            first: list[float] = []
            for name in names[1:]:
                before = len(stamped.times)
                start = time.perf_counter()
                release_events(message(name))
                assert len(stamped.times) > before, "the event caused no ARM request"
                first.append(stamped.times[before] - start)
        point, arm_get, latency = statistics.median(reads), statistics.median(arm), statistics.median(first)
        print(f"  an Azurite point read (baseline): {point * 1000:6.1f} ms")
        print(f"  one ARM read of the slots through the adapter: {arm_get * 1000:6.1f} ms")
        print(
            f"  event to its first ARM request: median {latency * 1000:6.1f} ms, max {max(first) * 1000:6.1f} ms "
            f"({latency / point:.1f} point reads)"
        )
    finally:
        bootstrap.use(None)
        azurite.stop()


if __name__ == "__main__":
    main()
