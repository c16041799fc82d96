"""Azure as it behaves, and the controller surviving it: minutes-long swaps that warm the slot up,
restarts on every settings write, settings that must be exactly a release's, sticky settings,
the routing cookie, late metrics, both error shapes, locks and throttling, several kinds of site.

All on the emulator's default (harsh) timings — 90 s swaps, 30 s restarts, metrics 3 minutes late —
on a clock the controller shares with it, so the minutes cost no real time."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from devstack.appservice import AppServiceEmulator, SiteConfig
from shared.adapters.analysis import AzureMonitorProvider, HttpProvider, ProviderAnalyzer
from shared.adapters.probes import HttpProber, HttpValidator
from shared.domain.model import Phase, ProviderKind, Target
from shared.service import ReleaseService
from tests.builders import SUBSCRIPTION, authority_for_tests
from tests.e2e.conftest import E2E, RG, SITE, build_e2e, canary_event, emulator_config


def blue_green(release_id="web-2.0.0", version="2.0.0", **changes):
    doc = canary_event(release_id=release_id, version=version, **changes)
    doc["strategy"] = {"type": "blueGreen", "guard": "2m"}
    doc["validation"] = {"checks": [{"path": "/healthz", "expectStatus": 200}], "consecutiveSuccesses": 1}
    return doc


def staging(e2e: E2E):
    return e2e.emulator.site(SITE).slots["staging"]


def production(e2e: E2E):
    return e2e.emulator.site(SITE).production


# 2 -- swaps take minutes and warm the slot up ---------------------------------------------------


def test_a_swap_of_minutes_holds_promoting_and_the_guard_starts_only_once_it_is_done(e2e):
    release_id = e2e.submit(blue_green())
    e2e.until(release_id, lambda r: r.phase is Phase.PROMOTING, seconds=20)
    promoting_ticks = 0
    while e2e.phase(release_id) is Phase.PROMOTING:
        assert production(e2e).settings["RELEASE_ID"] == "web-1.0.0", "production keeps the old version meanwhile"
        promoting_ticks += 1
        assert promoting_ticks < 20
        e2e.tick(release_id, 20)
    assert promoting_ticks >= 4, "a 90 s swap spans several 20 s ticks"
    release = e2e.service.get(release_id)
    assert release.phase is Phase.GUARDING and production(e2e).settings["RELEASE_ID"] == release_id
    e2e.until(release_id, lambda r: r.is_final, seconds=60)
    assert e2e.phase(release_id) is Phase.SUCCEEDED


def test_the_swap_warms_the_releases_first_check_up_and_a_slot_failing_it_is_never_swapped_in(e2e):
    release_id = e2e.submit(blue_green())
    e2e.until(release_id, lambda r: r.phase is Phase.PROMOTING, seconds=20)
    assert staging(e2e).settings["WEBSITE_SWAP_WARMUP_PING_PATH"] == "/healthz"
    assert staging(e2e).settings["WEBSITE_SWAP_WARMUP_PING_STATUSES"] == "200"
    staging(e2e).settings["EMULATOR_HEALTH_STATUS"] = "503"  # it breaks after validation, before the switch
    e2e.until(release_id, lambda r: r.is_final, seconds=20)
    release = e2e.service.get(release_id)
    assert release.phase is Phase.ROLLED_BACK
    assert "417 ExpectationFailed" in release.reason and "/healthz" in release.reason and "503" in release.reason
    assert production(e2e).settings["RELEASE_ID"] == "web-1.0.0"
    assert e2e.versions(100) == {"1.0.0": 100}


def test_a_warm_up_path_the_site_sets_itself_is_kept(e2e):
    staging(e2e).settings["WEBSITE_SWAP_WARMUP_PING_PATH"] = "/warmup"
    release_id = e2e.submit(blue_green())
    e2e.until(release_id, lambda r: r.is_final, seconds=30)
    assert e2e.phase(release_id) is Phase.SUCCEEDED
    assert e2e.emulator.cloud.warmups[-1][1] == "/warmup"
    assert "WEBSITE_SWAP_WARMUP_PING_STATUSES" not in production(e2e).settings


# 3 -- a slot gets exactly a release's settings ------------------------------------------------------


def test_a_rolled_back_releases_settings_never_reach_production(e2e):
    def release(n, settings):
        return canary_event(release_id=f"web-1.{n}.0", version=f"1.{n}.0", steps=(50,), settings=settings)

    a = e2e.submit(release(1, {"X": "on"}))
    e2e.until(a, lambda r: r.is_final, seconds=60)
    b = e2e.submit(release(2, {"Y": "on"}))
    e2e.until(b, lambda r: r.phase is Phase.SHIFTING)
    e2e.override(b, "rollback")
    e2e.until(b, lambda r: r.is_final)
    assert e2e.phase(b) is Phase.ROLLED_BACK
    assert "Y" not in staging(e2e).settings and staging(e2e).settings["X"] == "on", "the slot holds A as A was"
    staging(e2e).settings["SET_BY_HAND"] = "kept"  # no release set it: deploys keep it (it moves with the swap)
    c = e2e.submit(release(3, {"Z": "on"}))
    e2e.until(c, lambda r: r.is_final, seconds=60)
    assert e2e.phase(c) is Phase.SUCCEEDED
    live = production(e2e).settings
    assert live["Z"] == "on" and "Y" not in live and "X" not in live
    assert live["SET_BY_HAND"] == "kept", "what no release set stays"


# 4 -- stickiness -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["RELEASE_ID", "FEATURE_FLAG"])
def test_a_setting_that_would_not_move_with_the_swap_is_refused_before_anything_is_deployed(e2e, key):
    e2e.emulator.site(SITE).sticky_settings.add(key)
    release_id = e2e.submit(canary_event(settings={"FEATURE_FLAG": "on", "EMULATOR_ERROR_RATE": "0"}))
    e2e.until(release_id, lambda r: r.is_final)
    release = e2e.service.get(release_id)
    assert release.phase is Phase.ROLLED_BACK
    assert key in release.reason and "deployment slot setting" in release.reason and "slotConfigNames" in release.reason
    assert staging(e2e).settings.get("RELEASE_ID") != release_id


# 5 -- the routing cookie -------------------------------------------------------------------------------


def test_a_rollback_sends_visitors_pinned_to_the_slot_back_to_production(e2e):
    release_id = e2e.submit(canary_event(steps=(30,)))
    e2e.until(release_id, lambda r: r.phase is Phase.SHIFTING and r.step_started_at is not None)
    pinned = requests.Session()
    pinned.verify, pinned.trust_env = e2e.emulator.ca_file, False
    pinned.cookies.set("x-ms-routing-name", "staging")
    assert pinned.get(e2e.production_url(), timeout=5).json()["version"] == "1.1.0"
    e2e.override(release_id, "rollback")
    e2e.until(release_id, lambda r: r.is_final)
    pinned.cookies.set("x-ms-routing-name", "staging")
    assert pinned.get(e2e.production_url(), timeout=5).json()["version"] == "1.0.0", "no rule, no pinning"
    pinned.close()


# 6 -- metrics arrive late, in whole minutes ---------------------------------------------------------


@pytest.fixture
def monitored(e2e, table_store):
    """The controller judging on Azure Monitor's platform metrics."""
    analyzer = ProviderAnalyzer(
        {
            ProviderKind.HTTP: HttpProvider(HttpProber(e2e.emulator.ca_file)),
            ProviderKind.AZURE_MONITOR: AzureMonitorProvider(e2e.platform),
        }
    )
    e2e.service = ReleaseService(
        table_store,
        e2e.platform,
        HttpValidator(ca_bundle=e2e.emulator.ca_file),
        analyzer,
        e2e.notifier,
        e2e.clock,
        authority=authority_for_tests(),
    )
    return e2e


def test_metrics_are_read_in_whole_minutes_that_azure_monitor_has_complete(monitored):
    e2e = monitored
    target = Target(SUBSCRIPTION, RG, SITE, "staging")
    start = e2e.clock.now()
    for _ in range(30):
        requests.get(e2e.slot_url(), verify=e2e.emulator.ca_file, timeout=5)
    e2e.clock.advance(100)
    assert e2e.platform.read_metrics(target, production=False, start=start, end=e2e.clock.now()).requests == 0
    e2e.clock.advance(200)
    seen = e2e.platform.read_metrics(target, production=False, start=start, end=e2e.clock.now())
    assert seen.requests == 30 or start.second != 0, "a minute that began before the window is left out"


def test_a_bake_shorter_than_the_metric_delay_is_inconclusive_never_passed(monitored):
    e2e = monitored
    doc = canary_event(steps=(20,))
    doc["strategy"]["steps"] = [{"weight": 20, "bake": "1m"}]
    doc["analysis"] = {"providers": [{"type": "azureMonitor"}], "minRequests": 1, "maxBakeExtension": "0s"}
    release_id = e2e.submit(doc)
    e2e.until(release_id, lambda r: r.paused or r.is_final, seconds=20)
    release = e2e.service.get(release_id)
    assert release.phase is Phase.SHIFTING and release.inconclusive, (release.phase, release.reason)


# 7 -- errors as App Service sends them -----------------------------------------------------------


def test_a_management_lock_stops_the_release_with_what_to_do(e2e):
    e2e.emulator.site(SITE).locked = True
    release_id = e2e.submit(canary_event())
    e2e.until(release_id, lambda r: r.is_final)
    release = e2e.service.get(release_id)
    assert release.phase is Phase.ROLLED_BACK
    assert "ScopeLocked" in release.reason and "remove the lock" in release.reason


def test_an_app_service_error_body_is_read_for_the_message(e2e):
    e2e.emulator.inject(
        "/slots/staging/config/appsettings",
        method="PUT",
        status=400,
        code="BadRequest",
        message="The parameter WEBSITE_X has an invalid value.",
        shape="appservice",
    )
    release_id = e2e.submit(canary_event())
    e2e.until(release_id, lambda r: r.is_final)
    assert "The parameter WEBSITE_X has an invalid value." in e2e.service.get(release_id).reason


def test_throttling_is_waited_out_as_long_as_the_platform_asks(e2e):
    release_id = e2e.submit(canary_event())
    e2e.emulator.inject("/config/appsettings/list", status=429, code="TooManyRequests", retry_after=120, times=1)
    e2e.tick(release_id, 15)  # the deploy's next poll
    release = e2e.service.get(release_id)
    assert release.transient_failures == 1
    assert release.next_check_at >= e2e.clock.now() + timedelta(seconds=119)
    e2e.until(release_id, lambda r: r.is_final, seconds=60)
    assert e2e.phase(release_id) is Phase.SUCCEEDED


# 1 -- a swap status URL that never recovers ----------------------------------------------------------


def test_a_swap_whose_status_cannot_be_read_goes_by_what_the_slots_show(e2e):
    release_id = e2e.submit(blue_green())
    e2e.until(release_id, lambda r: r.phase is Phase.PROMOTING, seconds=20)
    e2e.emulator.inject("/operationresults/", method="GET", status=503, code="ServiceUnavailable", times=1000)
    e2e.until(release_id, lambda r: r.is_final, seconds=30)
    assert e2e.phase(release_id) is Phase.SUCCEEDED, "production running the release is the swap done"


def test_a_swap_that_never_completes_with_a_status_url_that_never_answers_ends_at_the_deadline(e2e):
    from dataclasses import replace

    e2e.emulator.cloud.timings = replace(e2e.emulator.cloud.timings, swap_seconds=10**6)
    release_id = e2e.submit(blue_green(analysis={"providers": [{"type": "http"}], "progressDeadline": "10m"}))
    e2e.until(release_id, lambda r: r.phase is Phase.PROMOTING, seconds=20)
    e2e.emulator.inject("/operationresults/", method="GET", status=503, code="ServiceUnavailable", times=1000)
    e2e.until(release_id, lambda r: r.is_final, seconds=60)
    release = e2e.service.get(release_id)
    assert release.phase is Phase.FAILED and "did not finish within 10m" in release.reason
    assert any(severity == "error" for _, severity, _ in e2e.notifier.sent), "a person is told"


# 9 -- restarts ---------------------------------------------------------------------------------------------


def test_the_deploy_waits_for_the_restarted_slot_to_answer(e2e):
    release_id = e2e.submit(canary_event())
    assert e2e.phase(release_id) is Phase.DEPLOYING
    e2e.tick(release_id, 10)
    e2e.tick(release_id, 10)
    assert e2e.phase(release_id) is Phase.DEPLOYING, "the app is still starting (503)"
    e2e.tick(release_id, 15)
    assert e2e.phase(release_id) is not Phase.DEPLOYING


def test_a_slot_that_never_starts_rolls_back_at_the_progress_deadline(clock, table_store):
    from devstack.appservice import Timings

    timings = Timings(startup_seconds=3600)
    with AppServiceEmulator(emulator_config(clock, timings=timings)) as emulator:
        e2e = _e2e(emulator, table_store, clock)
        release_id = e2e.submit(canary_event(analysis={"providers": [{"type": "http"}], "progressDeadline": "10m"}))
        e2e.until(release_id, lambda r: r.is_final, seconds=60)
        release = e2e.service.get(release_id)
        assert release.phase is Phase.ROLLED_BACK and "did not run and answer" in release.reason


def _e2e(emulator, table_store, clock) -> E2E:
    return build_e2e(emulator, table_store, clock)


# 8 -- deployment modes ------------------------------------------------------------------------------------


SITES = [
    SiteConfig(
        SUBSCRIPTION,
        "rg-modes",
        "win-container",
        kind="app,container,windows",
        windows_fx_version="DOCKER|c/win:1",
        production_settings={"RELEASE_ID": "win-1", "RELEASE_VERSION": "1"},
    ),
    SiteConfig(
        SUBSCRIPTION,
        "rg-modes",
        "node-app",
        kind="app,linux",
        linux_fx_version="NODE|20-lts",
        production_settings={"RELEASE_ID": "node-1", "RELEASE_VERSION": "1"},
    ),
    SiteConfig(SUBSCRIPTION, "rg-modes", "python-app", kind="app,linux", linux_fx_version="PYTHON|3.11"),
    SiteConfig(SUBSCRIPTION, "rg-modes", "sidecar-app", kind="app,linux,container", linux_fx_version="SITECONTAINERS"),
    SiteConfig(
        SUBSCRIPTION,
        "rg-modes",
        "acr-app",
        linux_fx_version="DOCKER|contoso.azurecr.io/web:1",
        production_config={"acrUseManagedIdentityCreds": True, "acrUserManagedIdentityID": "client-id-1"},
        production_settings={"RELEASE_ID": "acr-1", "RELEASE_VERSION": "1"},
    ),
]


@pytest.fixture
def modes(clock, table_store):
    with AppServiceEmulator(emulator_config(clock, sites=SITES)) as emulator:
        yield _e2e(emulator, table_store, clock)


def release_for(site, artifact, release_id):
    doc = canary_event(release_id=release_id, steps=(50,), artifact=artifact)
    doc["target"] = {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-modes", "site": site, "slot": "staging"}
    return doc


def test_a_windows_container_release_sets_the_windows_image(modes):
    release_id = modes.submit(release_for("win-container", {"container": "c/win:2"}, "win-2"))
    modes.until(release_id, lambda r: r.is_final, seconds=60)
    site = modes.emulator.site("win-container")
    assert modes.phase(release_id) is Phase.SUCCEEDED
    assert site.production.config["windowsFxVersion"] == "DOCKER|c/win:2"


def test_a_package_release_on_a_code_stack_runs_from_its_package(modes):
    url = "https://contoso.blob.core.windows.net/builds/node-2.zip"
    release_id = modes.submit(release_for("node-app", {"package": url}, "node-2"))
    modes.until(release_id, lambda r: r.is_final, seconds=60)
    site = modes.emulator.site("node-app")
    assert modes.phase(release_id) is Phase.SUCCEEDED
    assert site.production.settings["WEBSITE_RUN_FROM_PACKAGE"] == url
    assert site.production.config["linuxFxVersion"] == "NODE|20-lts", "the stack is untouched"


def test_an_image_from_a_registry_pulled_with_managed_identity_is_pulled_the_same_way_in_the_slot(modes):
    release_id = modes.submit(release_for("acr-app", {"container": "contoso.azurecr.io/web:2"}, "acr-2"))
    modes.until(release_id, lambda r: r.phase is not Phase.DEPLOYING)
    slot = modes.emulator.site("acr-app").slots["staging"]
    assert (
        slot.config["acrUseManagedIdentityCreds"] is True and slot.config["acrUserManagedIdentityID"] == "client-id-1"
    )


@pytest.mark.parametrize(
    ("site", "artifact", "says"),
    [
        ("python-app", {"package": "https://contoso.blob.core.windows.net/b/p.zip"}, "Python apps from a package"),
        ("sidecar-app", {"container": "c/web:2"}, "sidecar"),
        ("node-app", {"container": "c/web:2"}, "container app"),
    ],
)
def test_what_cannot_be_released_safely_is_refused_before_anything_changes(modes, site, artifact, says):
    release_id = modes.submit(release_for(site, artifact, f"{site}-9"))
    modes.until(release_id, lambda r: r.is_final)
    release = modes.service.get(release_id)
    assert release.phase is Phase.ROLLED_BACK and says in release.reason
    assert modes.emulator.site(site).slots["staging"].settings.get("RELEASE_ID") is None


def test_a_swap_answered_with_azure_async_operation_is_followed_on_that_url(clock, table_store):
    with AppServiceEmulator(emulator_config(clock, async_operation_header=True)) as emulator:
        e2e = _e2e(emulator, table_store, clock)
        release_id = e2e.submit(blue_green())
        e2e.until(release_id, lambda r: r.is_final, seconds=30)
        assert e2e.phase(release_id) is Phase.SUCCEEDED
        polled = [p for m, p in emulator.cloud.arm_requests if m == "GET" and "/operations/" in p]
        assert polled, "the status came from the Azure-AsyncOperation URL"
