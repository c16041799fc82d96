"""Faults injected into the emulator's ARM API, classified by the real adapter: transient ones
leave the release as it was and are retried with the attempt counted in the audit; terminal ones
take the rollback path with a message that tells the operator what to fix."""

from __future__ import annotations

import pytest

from devstack.appservice import AppServiceEmulator
from shared.domain.model import Phase
from tests.e2e.conftest import RG, SITE, canary_event, canary_target, emulator_config, make_platform


def audit_actions(e2e, release_id):
    return [a.entry for a in e2e.service.audit(release_id)]


TRANSIENT = [
    ("429 while setting the weight", "PATCH", f"/sites/{SITE}/config/web", 429, 0.0, "ARM answered 429"),
    ("500 while reading settings", "POST", f"/sites/{SITE}/config/appsettings/list", 500, 0.0, "ARM answered 500"),
    ("503 while starting the swap", "POST", "/slotsswap", 503, 0.0, "ARM answered 503"),
    (
        "a response slower than the read timeout",
        "GET",
        f"/sites/{SITE}/config/web",
        None,
        2.0,
        "did not answer in time",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "status", "delay", "says"), [t[1:] for t in TRANSIENT], ids=[t[0] for t in TRANSIENT]
)
def test_transient_faults_keep_the_state_count_the_attempt_and_recover(e2e, method, path, status, delay, says):
    e2e.service.platform = make_platform(e2e.emulator, read_timeout=0.5)
    e2e.emulator.inject(path, method=method, status=status, delay_seconds=delay, times=2)
    release_id = e2e.submit(canary_event(steps=(30,)))
    e2e.until(release_id, lambda r: r.is_final, seconds=120)
    assert e2e.phase(release_id) is Phase.SUCCEEDED
    entries = audit_actions(e2e, release_id)
    transient = [(i, a) for i, a in enumerate(entries) if a.action == "transient.failure"]
    assert [a.details["attempt"] for _, a in transient] == [1, 2]
    assert says in transient[0][1].message
    for index, entry in transient:
        previous = entries[index - 1]
        assert entry.phase_from is entry.phase_to is previous.phase_to, "a transient failure changes no phase"
        assert entry.weight == previous.weight, "... and no weight"
    assert e2e.service.get(release_id).transient_failures == 0


def test_a_403_is_terminal_and_says_which_role_is_missing(e2e):
    e2e.emulator.inject(
        "/slots/staging/config/appsettings",
        method="PUT",
        status=403,
        code="AuthorizationFailed",
        message="The client does not have authorization to perform action 'Microsoft.Web/sites/slots/config/write'",
    )
    release_id = e2e.submit(canary_event())
    e2e.until(release_id, lambda r: r.is_final)
    release = e2e.service.get(release_id)
    assert release.phase is Phase.ROLLED_BACK
    assert "403 AuthorizationFailed" in release.reason and "Website Contributor" in release.reason
    assert e2e.versions(100) == {"1.0.0": 100}


def test_a_missing_slot_is_terminal_and_names_it(e2e):
    doc = canary_event()
    doc["target"] = {**doc["target"], "slot": "blue"}
    release_id = e2e.submit(doc)
    e2e.until(release_id, lambda r: r.is_final)
    release = e2e.service.get(release_id)
    assert release.phase is Phase.CANCELLED, "nothing was changed on the site"
    assert "slot blue was not found (404" in release.reason
    assert any(severity == "error" and "could not start" in m for _, severity, m in e2e.notifier.sent)


def test_the_adapter_asks_for_an_arm_token_and_a_token_for_another_audience_is_terminal(table_store):
    from devstack.credentials import EmulatorCredential
    from shared.adapters.memory import FakeClock, RecordingNotifier, ScriptedAnalyzer
    from shared.adapters.probes import HttpValidator
    from shared.service import ReleaseService
    from tests.builders import authority_for_tests, body, ingest

    with AppServiceEmulator(emulator_config()) as emulator:
        right = EmulatorCredential()
        make_platform(emulator, right).observe(canary_target())
        assert set(right.scopes_asked) == {("https://management.azure.com/.default",)}
        wrong = EmulatorCredential()
        service = ReleaseService(
            table_store,
            make_platform(emulator, wrong, arm_scope="https://graph.microsoft.com/.default"),
            HttpValidator(ca_bundle=emulator.ca_file),
            ScriptedAnalyzer(),
            RecordingNotifier(),
            FakeClock(),
            authority=authority_for_tests(),
        )
        ingest(service, body(canary_event()), message_id=None, source="e2e")
        release = service.get("web-1.1.0")
        assert release.phase is Phase.CANCELLED
        assert "rejected the controller's token (401 InvalidAuthenticationTokenAudience" in release.reason
        assert "ARM_SCOPE" in release.reason


def test_an_expired_token_is_refused_and_the_next_call_gets_a_new_one(emulator):
    from devstack.credentials import EmulatorCredential
    from shared.ports import TransientPlatformError

    platform = make_platform(emulator, EmulatorCredential(lifetime_seconds=-60))
    with pytest.raises(TransientPlatformError, match="expired"):
        platform.observe(canary_target())


def test_a_failed_swap_rolls_back_with_the_platform_message(e2e):
    release_id = e2e.submit(canary_event(steps=(50,)))
    e2e.emulator.fail_next_swap("SwapFailed", "Cannot swap: the staging slot failed to warm up (HTTP 503 on /)")
    e2e.until(release_id, lambda r: r.is_final, seconds=300)
    release = e2e.service.get(release_id)
    assert release.phase is Phase.ROLLED_BACK
    assert "swap into production failed: 409 SwapFailed: Cannot swap: the staging slot failed to warm up" in (
        release.reason
    )
    assert e2e.versions(200) == {"1.0.0": 200}
    assert e2e.emulator.site(SITE).production.config["experiments"]["rampUpRules"] == []


def test_the_adapter_sends_only_what_azure_expects(e2e):
    """The wire, as the emulator received it: PATCH for rules and the image, one PUT for settings (which
    restarts the app), the slot settings names read before, a slot swap followed on its Location."""
    release_id = e2e.submit(canary_event(steps=(50,)))
    e2e.until(release_id, lambda r: r.is_final, seconds=300)
    calls = {(m, p.split(f"/sites/{SITE}", 1)[-1]) for m, p in e2e.emulator.cloud.arm_requests}
    assert ("PATCH", "/config/web") in calls
    assert ("PATCH", "/slots/staging/config/web") in calls
    assert ("PUT", "/slots/staging/config/appsettings") in calls
    assert ("GET", "/config/slotConfigNames") in calls
    assert ("POST", "/slots/staging/slotsswap") in calls
    assert any(m == "GET" and "/slots/staging/operationresults/" in p for m, p in calls)
    assert not any(p.endswith("/restart") for _, p in calls), "a settings write restarts the app already"
    assert not any(m == "PUT" and p == "/config/web" for m, p in calls), "never a full PUT of the site config"
    assert all(f"/resourceGroups/{RG}/" in p or "/locations/" in p for _, p in e2e.emulator.cloud.arm_requests)
