"""Notifications to the places operators already look: Microsoft Teams and Slack incoming
webhooks, and a generic JSON webhook in the CloudEvents 1.0 format, signed like release events
(``X-Release-Signature-256: sha256=<HMAC of the body>``).

Each sink is configured by app settings (its URL and secret are Key Vault references in Azure):
``NOTIFY_<NAME>_KIND`` (teams, slack, cloudevents), ``NOTIFY_<NAME>_URL``, and optionally
``NOTIFY_<NAME>_SITES`` (site names; all when unset), ``NOTIFY_<NAME>_EVENTS`` (all when unset)
and ``NOTIFY_<NAME>_SECRET`` (cloudevents: the HMAC key). A sink only sends; whether it delivered
is the service's to record, retry and, in the end, give up on in the audit."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from shared.adapters.codec import target_record
from shared.authority.proofs import sign
from shared.domain.model import Alert, Release
from shared.settings import NotificationSink

CONNECT_TIMEOUT, READ_TIMEOUT = 3.0, 5.0
CLOUDEVENTS_TYPE_PREFIX = "com.azure-app-service.release-controller.release."
TITLES = {
    "started": "Release started",
    "stepAdvanced": "Canary step started",
    "paused": "Release paused",
    "awaitingApproval": "Waiting for approval",
    "rolledBack": "Release rolled back",
    "succeeded": "Release succeeded",
    "failed": "Release FAILED: a person must act",
    "warning": "Release needs attention",
    "advisory": "Advisory analysis would have acted",
}
COLOURS = {"rolledBack": "attention", "failed": "attention", "warning": "warning", "succeeded": "good"}


class NotificationRefused(Exception):
    """The sink did not take the notification (its answer's status, never its URL)."""


def _pct(value: Any) -> str:
    return "?" if value is None else f"{100 * float(value):.1f}%"


def measurement_line(n: dict[str, Any]) -> str:
    """One judged measurement in a line: the numbers that decided, against their limits."""
    parts = [
        f"{n.get('provider', '?')}: errors {n.get('canaryErrors')}/{n.get('canaryRequests')} "
        f"({_pct(n.get('canaryErrorRate'))}; lower bound {_pct(n.get('canaryErrorRateLowerBound'))}) "
        f"against the limit {_pct(n.get('maxErrorRate'))}",
        f"stable {n.get('stableErrors')}/{n.get('stableRequests')} ({_pct(n.get('stableErrorRate'))})",
    ]
    if n.get("canaryLatencyMs") is not None:
        parts.append(
            f"{n.get('latencyStatistic') or 'latency'} {float(n['canaryLatencyMs']):.0f} ms "
            f"against the limit {float(n.get('maxLatencyMs') or 0):.0f} ms"
        )
    return "; ".join(parts)


def facts(release: Release, alert: Alert, link: str | None) -> list[tuple[str, str]]:
    spec = release.spec
    out = [
        ("Release", release.id),
        ("Version", spec.version),
        ("Site", f"{spec.target.site} ({spec.target.resource_group}), slot {spec.target.slot}"),
        ("Phase", release.phase.value),
    ]
    if spec.is_canary and release.step >= 0:
        out.append(("Step", f"{release.step + 1} of {len(spec.strategy.steps)} (rule weight {release.weight:g}%)"))
    reason = alert.details.get("reason")
    if reason:
        out.append(("Why", str(reason)))
    for n in alert.details.get("measurements") or []:
        if isinstance(n, dict):
            out.append(("Measurement", measurement_line(n)))
    if link:
        out.append(("Dashboard", link))
    return out


def teams_payload(release: Release, alert: Alert, link: str | None) -> dict[str, Any]:
    """An Adaptive Card in the message envelope Teams' incoming webhooks (Workflows) accept."""
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": f"{TITLES.get(alert.event, alert.event)}: {release.id}",
                "weight": "Bolder",
                "size": "Medium",
                "color": COLOURS.get(alert.event, "default"),
                "wrap": True,
            },
            {"type": "TextBlock", "text": alert.message, "wrap": True},
            {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in facts(release, alert, None)]},
        ],
    }
    if link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in the dashboard", "url": link}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def slack_payload(release: Release, alert: Alert, link: str | None) -> dict[str, Any]:
    title = f"{TITLES.get(alert.event, alert.event)}: {release.id}"
    lines = "\n".join(f"*{t}*: {v}" for t, v in facts(release, alert, link))
    return {
        "text": f"{title}: {alert.message}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": alert.message[:3000]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": lines[:3000]}},
        ],
    }


def cloudevent(release: Release, alert: Alert, link: str | None, source: str) -> dict[str, Any]:
    """CloudEvents 1.0, structured mode. ``id`` is stable per release and alert, so a receiver can
    drop the duplicates an at-least-once delivery may bring."""
    spec = release.spec
    return {
        "specversion": "1.0",
        "id": f"{release.id}/{alert.seq}",
        "source": source,
        "type": CLOUDEVENTS_TYPE_PREFIX + alert.event,
        "subject": release.id,
        "time": alert.at.isoformat(),
        "datacontenttype": "application/json",
        "data": {
            "releaseId": release.id,
            "version": spec.version,
            "target": target_record(spec.target),
            "event": alert.event,
            "severity": alert.severity,
            "message": alert.message,
            "phase": release.phase.value,
            "step": release.step + 1 if release.step >= 0 else None,
            "weight": release.weight,
            "details": dict(alert.details),
            "dashboard": link,
        },
    }


class WebhookNotifications:
    """The configured sinks, sending over HTTPS with short timeouts (a slow receiver costs a
    reconcile at most a few seconds, then waits for its retry)."""

    def __init__(self, sinks: Sequence[NotificationSink], *, public_host: str | None = None, session: Any = None):
        self._sinks = {s.name: s for s in sinks}
        self._public_host = public_host
        self._session = session
        self.source = f"https://{public_host}/api" if public_host else "urn:release-controller"

    def _http(self) -> Any:
        if self._session is None:
            import requests

            session = requests.Session()
            session.trust_env = False
            self._session = session
        return self._session

    def _takes(self, sink: NotificationSink, release: Release, event: str) -> bool:
        site = release.spec.target.site.lower()
        return (not sink.sites or site in sink.sites) and (not sink.events or event in sink.events)

    def wanted(self, release: Release) -> frozenset[str]:
        from shared.domain.lifecycle import EVENTS

        return frozenset(e for e in EVENTS for s in self._sinks.values() if self._takes(s, release, e))

    def sinks(self, release: Release, alert: Alert) -> list[str]:
        return [name for name, s in self._sinks.items() if self._takes(s, release, alert.event)]

    def link(self, release: Release) -> str | None:
        return f"https://{self._public_host}/api/dashboard/releases/{release.id}" if self._public_host else None

    def send(self, sink: str, release: Release, alert: Alert) -> None:
        config = self._sinks[sink]
        link = self.link(release)
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "release-controller"}
        if config.kind == "teams":
            payload = teams_payload(release, alert, link)
        elif config.kind == "slack":
            payload = slack_payload(release, alert, link)
        else:
            payload = cloudevent(release, alert, link, self.source)
            headers["Content-Type"] = "application/cloudevents+json; charset=utf-8"
            headers["Idempotency-Key"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.source}/{payload['id']}"))
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        if config.secret:
            headers["X-Release-Signature-256"] = sign(body, config.secret)
        response = self._http().post(
            config.url, data=body, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=False
        )
        if not 200 <= response.status_code < 300:
            raise NotificationRefused(f"HTTP {response.status_code}")
