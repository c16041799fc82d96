"""End-to-end fixtures: the App Service emulator over TLS, driven through the real azure-mgmt-web
adapter, with releases stored in Table Storage on Azurite.

The emulator runs with Azure's own timings (swaps of 90 s, 30 s restarts, metrics three minutes
late) on a clock it shares with the controller: a test moves that clock forward instead of
sleeping, so minutes of Azure time cost a fraction of a second."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import requests

from devstack.appservice import AppServiceEmulator, EmulatorConfig, SiteConfig
from devstack.credentials import EmulatorCredential
from shared.adapters.analysis import HttpProvider, ProviderAnalyzer
from shared.adapters.appservice import AppServiceSlotPlatform
from shared.adapters.memory import FakeClock, RecordingNotifier
from shared.adapters.probes import HttpProber, HttpValidator
from shared.domain.model import OverrideKind, Phase, ProviderKind
from shared.service import ReleaseService
from tests.builders import SUBSCRIPTION, authority_for_tests, body, event, ingest, person

SITE = "contoso-web"
RG = "rg-web"


def emulator_config(clock: FakeClock | None = None, *, sites: list[SiteConfig] | None = None, **kw) -> EmulatorConfig:
    """Azure's timings (the emulator's defaults) on ``clock``; the site contoso-web unless ``sites``."""
    site = SiteConfig(
        SUBSCRIPTION,
        RG,
        SITE,
        slots=("staging",),
        production_settings={"RELEASE_ID": "web-1.0.0", "RELEASE_VERSION": "1.0.0"},
        linux_fx_version="DOCKER|contoso.azurecr.io/web:1.0.0",
    )
    options: dict = {"seed": 20261126}
    if clock is not None:
        options["clock"] = lambda: clock.now().timestamp()
    options.update(kw)
    return EmulatorConfig(sites or [site], **options)


def sites_named(names: list[str]) -> list[SiteConfig]:
    """Emulated sites like contoso-web (staging slot, production on <name>-1.0.0), one per name."""
    return [
        SiteConfig(
            SUBSCRIPTION,
            RG,
            name,
            slots=("staging",),
            production_settings={"RELEASE_ID": f"{name}-1.0.0", "RELEASE_VERSION": "1.0.0"},
            linux_fx_version="DOCKER|contoso.azurecr.io/web:1.0.0",
        )
        for name in names
    ]


@pytest.fixture
def clock() -> FakeClock:
    """The one clock of a test: the controller's, and the emulated cloud's."""
    return FakeClock()


@pytest.fixture
def emulator(clock):
    with AppServiceEmulator(emulator_config(clock)) as running:
        yield running


def make_platform(emulator: AppServiceEmulator, credential=None, **kw) -> AppServiceSlotPlatform:
    """Exactly the adapter the Function App builds, pointed at the emulator (endpoint, credential, CA)."""
    options = {"retry_total": 0, "read_timeout": 5.0, "arm_scope": "https://management.azure.com/.default"}
    options.update(kw)
    return AppServiceSlotPlatform(
        credential or EmulatorCredential(),
        arm_endpoint=emulator.arm_url,
        ca_bundle=emulator.ca_file,
        prober=HttpProber(emulator.ca_file),
        **options,
    )


@dataclass
class E2E:
    emulator: AppServiceEmulator
    service: ReleaseService
    platform: AppServiceSlotPlatform
    clock: FakeClock
    notifier: RecordingNotifier
    http: requests.Session

    def submit(self, doc) -> str:
        result = ingest(self.service, body(doc), message_id=None, source="e2e")
        assert result.outcome == "created", result.reason
        return result.release.id

    def tick(self, release_id: str, seconds: float = 30) -> None:
        self.clock.advance(seconds)
        self.service.reconcile(release_id)

    def phase(self, release_id: str) -> Phase:
        return self.service.get(release_id).phase

    def until(self, release_id: str, predicate, *, limit: int = 80, seconds: float = 30, pause: float = 0.05) -> None:
        """Tick until ``predicate(release)`` holds; real time passes too (swaps, restarts)."""
        for _ in range(limit):
            release = self.service.get(release_id)
            if predicate(release):
                return
            self.tick(release_id, seconds)
            time.sleep(pause)
        release = self.service.get(release_id)
        raise AssertionError(f"{release_id} stuck in {release.phase} (reason: {release.reason})")

    def override(self, release_id: str, kind: str, reason: str = "e2e") -> None:
        self.service.override(release_id, OverrideKind(kind), actor=person("e2e"), reason=reason)

    def production_url(self) -> str:
        return f"https://{self.emulator.site(SITE).front_door_host}/"

    def slot_url(self, slot: str = "staging") -> str:
        return f"https://{self.emulator.site(SITE).slots[slot].host}/"

    def versions(self, n: int = 1000) -> Counter:
        """Which version answers ``n`` fresh visitors (no routing cookie) on the production host name."""
        seen: Counter = Counter()
        for _ in range(n):
            self.http.cookies.clear()
            response = self.http.get(self.production_url(), timeout=5)
            seen[
                json.loads(response.text)["version"] if response.status_code == 200 else f"HTTP {response.status_code}"
            ] += 1
        return seen

    def version_at(self, url: str) -> str:
        self.http.cookies.clear()
        return self.http.get(url, timeout=5).json()["version"]


def build_e2e(emulator, table_store, clock, *, analyzer=None, platform=None, notifications=None, authority=None) -> E2E:
    """The controller as the Function App builds it, on the emulator, with the tests' policy and
    keys; the analyzer runs the http provider unless given."""
    platform = platform or make_platform(emulator)
    notifier = RecordingNotifier()
    analyzer = analyzer or ProviderAnalyzer({ProviderKind.HTTP: HttpProvider(HttpProber(emulator.ca_file))})
    service = ReleaseService(
        table_store,
        platform,
        HttpValidator(ca_bundle=emulator.ca_file),
        analyzer,
        notifier,
        clock,
        authority=authority or authority_for_tests(),
        notifications=notifications,
    )
    session = requests.Session()
    session.verify = emulator.ca_file
    session.trust_env = False
    return E2E(emulator, service, platform, clock, notifier, session)


@pytest.fixture
def e2e(emulator, table_store, clock):
    built = build_e2e(emulator, table_store, clock)
    yield built
    built.http.close()


def canary_event(release_id="web-1.1.0", version="1.1.0", steps=(10, 25, 50), settings=None, **changes):
    doc = event(
        releaseId=release_id,
        version=version,
        target={"subscriptionId": SUBSCRIPTION, "resourceGroup": RG, "site": SITE, "slot": "staging"},
        artifact={"container": f"contoso.azurecr.io/web:{version}"},
        appSettings=settings or {"EMULATOR_ERROR_RATE": "0", "EMULATOR_LATENCY_MS": "0"},
        strategy={"type": "canary", "steps": [{"weight": w, "bake": "5m"} for w in steps]},
        validation={
            "checks": [{"path": "/healthz", "expectStatus": 200, "bodyContains": "ok"}],
            "consecutiveSuccesses": 2,
        },
        analysis={"providers": [{"type": "http", "requestsPerTick": 5}], "minRequests": 5},
    )
    doc.update(changes)
    return doc


def bad_canary_event(release_id="web-1.2.0", version="1.2.0", steps=(10, 50)):
    """A two-step canary whose new version fails 60% of its requests."""
    return canary_event(
        release_id=release_id,
        version=version,
        steps=steps,
        settings={"EMULATOR_ERROR_RATE": "0.6", "EMULATOR_LATENCY_MS": "0"},
    )


def canary_target():
    from shared.domain.model import Target

    return Target(SUBSCRIPTION, RG, SITE, "staging")
