"""The controller's own alert channel (the log the alert rules watch) is retried until it takes an
alert, however many times it failed: a rollback's alert is never given up. Webhook sinks are given
up after their attempts (tests/e2e/test_notifications.py)."""

from __future__ import annotations

from shared.domain.lifecycle.alerts import MAX_ATTEMPTS
from shared.domain.model import OverrideKind, Phase
from tests.builders import CANARY_EVENT, body, harness, ingest, person


class DownThenUp:
    def __init__(self, failures: int):
        self.failures = failures
        self.sent: list[tuple[str, str, str]] = []

    def notify(self, release, severity, message):
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("the alert channel did not answer")
        self.sent.append((release.id, severity, message))


def test_a_rollback_alert_is_retried_past_the_webhook_limit_until_the_log_takes_it():
    h = harness()
    notifier = DownThenUp(failures=MAX_ATTEMPTS + 3)
    h.service.notifier = notifier
    release_id = ingest(h.service, body(CANARY_EVENT), message_id=None, source="http").release.id
    h.service.override(release_id, OverrideKind.ROLLBACK, actor=person("erin"), reason="bad build")
    for _ in range(40):
        h.tick(release_id, 600)
        if any("rolled back" in m for _, _, m in notifier.sent):
            break
    assert h.phase(release_id) == Phase.ROLLED_BACK
    assert any(rid == release_id and "rolled back" in m for rid, _, m in notifier.sent)
    assert h.service.get(release_id).outbox == ()
    assert not [e for e in h.service.audit(release_id) if e.entry.action == "notification.failed"]
