"""Rollback latency: reconciles from the first failing measurement to weight 0, on the emulator.

Bad releases (20% errors) go out under real visitors, with Azure Monitor analysis through ARM, the
real azure-mgmt-web adapter over TLS and releases on Azurite. The emulator keeps Azure's timings
(restarts, metrics three minutes late) on a clock it shares with the controller: each round moves
it 20 s while real visitors keep coming, so minutes of Azure time cost seconds. For each one it records every
reconcile: whether the routing rule still sends traffic to the release afterwards, and how long
the reconcile took. Baseline, measured in the same run: an ordinary reconcile during a bake.
"""

from __future__ import annotations

import statistics
import time

from devstack.appservice import AppServiceEmulator
from devstack.azurite import start_azurite
from devstack.traffic import Visitors
from shared.adapters.analysis import ProviderAnalyzer
from shared.adapters.memory import FakeClock, RecordingNotifier
from shared.adapters.probes import HttpValidator
from shared.adapters.table_store import TableReleaseStore
from shared.domain.model import Phase
from shared.service import ReleaseService
from shared.settings import Settings
from tests.builders import authority_for_tests, body, ingest
from tests.e2e.conftest import SITE, canary_event, emulator_config, make_platform

RUNS = 5
ROUND_SECONDS = 20
ROUND_PAUSE = 0.3


def bad_release(n: int) -> dict:
    doc = canary_event(
        release_id=f"bad-{n}",
        version=f"9.{n}.0",
        settings={"EMULATOR_ERROR_RATE": "0.2", "EMULATOR_LATENCY_MS": "0"},
        steps=(10, 50),
    )
    doc["strategy"] = {"type": "canary", "steps": [{"weight": 10, "bake": "30s"}, {"weight": 50, "bake": "30s"}]}
    doc["validation"] = {"checks": [{"path": "/healthz"}], "consecutiveSuccesses": 1}
    doc["analysis"] = {"providers": [{"type": "azureMonitor"}], "minRequests": 50, "maxErrorRate": 0.05}
    return doc


def main() -> None:
    azurite = start_azurite()
    try:
        clock = FakeClock()
        with AppServiceEmulator(emulator_config(clock, seed=None)) as emulator:
            platform = make_platform(emulator)
            settings = Settings.from_env({"RELEASE_STORE_CONNECTION": azurite.connection_string})
            service = ReleaseService(
                TableReleaseStore.from_connection_string(azurite.connection_string, prefix="rollbackbench"),
                platform,
                HttpValidator(ca_bundle=emulator.ca_file),
                ProviderAnalyzer.from_settings(settings, platform),
                RecordingNotifier(),
                clock,
                authority=authority_for_tests(),
            )
            site = emulator.site(SITE)
            baking: list[float] = []
            deciding: list[float] = []
            extra_reconciles: list[int] = []
            url = f"https://{site.front_door_host}/"
            with Visitors(url, emulator.ca_file, rate_per_second=150, workers=4):
                for n in range(RUNS):
                    release_id = ingest(service, body(bad_release(n)), message_id=None, source="bench").release.id
                    failed_at = None
                    for tick in range(400):
                        started = time.perf_counter()
                        service.reconcile(release_id, force=True)
                        elapsed = time.perf_counter() - started
                        release = service.get(release_id)
                        rules = site.production.config.get("experiments", {}).get("rampUpRules") or []
                        if failed_at is None and release.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK):
                            failed_at = tick
                            deciding.append(elapsed)
                        elif release.phase is Phase.SHIFTING and release.step_started_at is not None:
                            baking.append(elapsed)
                        if failed_at is not None and not rules:
                            extra_reconciles.append(tick - failed_at)
                            break
                        time.sleep(ROUND_PAUSE)
                        clock.advance(ROUND_SECONDS)
                    for _ in range(200):
                        if service.get(release_id).is_final:
                            break
                        clock.advance(ROUND_SECONDS)
                        service.reconcile(release_id, force=True)
    finally:
        azurite.stop()
    base, decide = statistics.median(baking), statistics.median(deciding)
    same = sum(1 for e in extra_reconciles if e == 0)
    print(f"  runs: {RUNS}; reconciles after the failing one until weight 0: {extra_reconciles}")
    print(f"  weight 0 in the same reconcile as the first failing measurement: {same}/{RUNS}")
    print(f"  reconcile during a bake (baseline): {base * 1000:6.0f} ms median over {len(baking)}")
    print(
        f"  reconcile that measured the failure and set weight 0: {decide * 1000:6.0f} ms median "
        f"({decide / base:.2f}x the baseline)"
    )


if __name__ == "__main__":
    main()
