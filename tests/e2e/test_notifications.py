"""Notifications on the emulator, to local receivers in the formats Teams, Slack and CloudEvents
webhooks take: what operators see when a release starts, moves, rolls back or succeeds, and a sink
that keeps refusing never holding a release up."""

from __future__ import annotations

import pytest

from devstack.receiver import WebhookReceiver
from shared.adapters.notifications import CLOUDEVENTS_TYPE_PREFIX, WebhookNotifications
from shared.authority.proofs import sign
from shared.domain.lifecycle.alerts import MAX_ATTEMPTS
from shared.domain.model import Phase
from shared.settings import Settings
from tests.e2e.conftest import bad_canary_event, build_e2e, canary_event

SECRET = "notify-secret"


@pytest.fixture
def receivers():
    with WebhookReceiver() as teams, WebhookReceiver() as slack, WebhookReceiver() as hook:
        yield teams, slack, hook


def notifications(teams, slack, hook, **extra):
    env = {
        "RELEASE_STORE_ENDPOINT": "https://example.table.core.windows.net",
        "NOTIFY_OPS_KIND": "teams",
        "NOTIFY_OPS_URL": teams.url,
        "NOTIFY_CHAT_KIND": "slack",
        "NOTIFY_CHAT_URL": slack.url,
        "NOTIFY_CHAT_SITES": "contoso-web",
        "NOTIFY_AUDIT_KIND": "cloudevents",
        "NOTIFY_AUDIT_URL": hook.url,
        "NOTIFY_AUDIT_SECRET": SECRET,
        "NOTIFY_AUDIT_EVENTS": "rolledBack,succeeded,failed",
        **extra,
    }
    settings = Settings.from_env(env)
    return WebhookNotifications(settings.notification_sinks, public_host="release-ctl.azurewebsites.net")


def card_of(received):
    (attachment,) = received.json()["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    title = card["body"][0]["text"]
    facts = {f["title"]: f["value"] for block in card["body"] if block["type"] == "FactSet" for f in block["facts"]}
    return title, facts, card


def test_a_rolled_back_release_tells_teams_the_failing_numbers_and_sends_a_signed_cloudevent(
    emulator, table_store, clock, receivers
):
    teams, slack, hook = receivers
    e2e = build_e2e(emulator, table_store, clock, notifications=notifications(teams, slack, hook))
    try:
        doc = bad_canary_event()
        release_id = e2e.submit(doc)
        e2e.until(release_id, lambda r: r.is_final, seconds=60)
        release = e2e.service.get(release_id)
        assert release.phase is Phase.ROLLED_BACK and release.outbox == ()
    finally:
        e2e.http.close()

    titles = [card_of(r)[0] for r in teams.received]
    assert titles == [
        "Release started: web-1.2.0",
        "Canary step started: web-1.2.0",
        "Release rolled back: web-1.2.0",
    ]
    _, facts, card = card_of(teams.received[-1])
    started = next(e.entry for e in e2e.service.audit(release_id) if e.entry.action == "rollback.started")
    (numbers,) = started.details["analysis"]["providers"]
    measured = facts["Measurement"]
    assert f"errors {numbers['canaryErrors']}/{numbers['canaryRequests']}" in measured
    assert f"({100 * numbers['canaryErrorRate']:.1f}%" in measured and "against the limit 5.0%" in measured
    assert "error rate" in facts["Why"]
    assert card["actions"][0]["url"] == "https://release-ctl.azurewebsites.net/api/dashboard/releases/web-1.2.0"

    assert [r.json()["blocks"][0]["text"]["text"] for r in slack.received] == titles

    (event,) = hook.received
    assert event.headers["X-Release-Signature-256"] == sign(event.body, SECRET)
    assert event.headers["Content-Type"].startswith("application/cloudevents+json")
    doc = event.json()
    assert doc["specversion"] == "1.0" and doc["type"] == CLOUDEVENTS_TYPE_PREFIX + "rolledBack"
    assert doc["id"] == f"{release_id}/{release.alerts_raised}" and doc["subject"] == release_id
    assert doc["data"]["details"]["measurements"][0]["canaryErrors"] == numbers["canaryErrors"]


def test_a_sink_that_keeps_refusing_is_retried_with_backoff_then_given_up_without_holding_the_release(
    emulator, table_store, clock, receivers
):
    teams, slack, hook = receivers
    teams.refuse_next = 10_000
    e2e = build_e2e(emulator, table_store, clock, notifications=notifications(teams, slack, hook))
    try:
        release_id = e2e.submit(canary_event(release_id="web-1.1.0", version="1.1.0", steps=(10, 50)))
        e2e.until(release_id, lambda r: r.is_final, seconds=60)
        assert e2e.phase(release_id) is Phase.SUCCEEDED, "a refusing sink never holds a release"
        for _ in range(40):  # the retries go on after the release ended, at their backoff
            release = e2e.service.get(release_id)
            if not release.outbox:
                break
            assert all(a.retry_at is not None and a.delivered for a in release.outbox)
            clock.advance(120)
            e2e.service.reconcile(release_id)
        assert e2e.service.get(release_id).outbox == ()
    finally:
        e2e.http.close()

    events = ["started", "stepAdvanced", "stepAdvanced", "succeeded"]
    slack_titles = [r.json()["blocks"][0]["text"]["text"].split(":")[0] for r in slack.received]
    assert len(slack_titles) == len(events), "each delivered once to the sink that took it"
    assert [r.json()["type"] for r in hook.received] == [CLOUDEVENTS_TYPE_PREFIX + "succeeded"]
    assert teams.refused == MAX_ATTEMPTS * len(events)
    gave_up = [e.entry for e in e2e.service.audit(release_id) if e.entry.action == "notification.failed"]
    assert [g.details["event"] for g in gave_up] == events
    assert all(g.details["sinks"] == ["ops"] and "HTTP 503" in g.message for g in gave_up)
    assert all(teams.url not in g.message for g in gave_up), "a webhook's URL is its secret"
