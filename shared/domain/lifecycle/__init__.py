"""The release lifecycle: a pure state machine, one module per concern.

- ``decide``     — the one entry: ``decide(release, observation, now) -> Decision``, and ``needs``
- ``desired``    — the desired routing weight and slot content of every phase, in one table
- ``admission``  — arrival, supersede and queue, the site's hand-over, retry (pending)
- ``delivery``   — deploy and validation (deploying, validating)
- ``gates``      — webhook gates and a person's approval (awaitingApproval)
- ``shifting``   — the canary's steps (shifting); ``judging`` folds analysis into verdicts
- ``promotion``  — the claimed swap into production and the guard window (promoting, guarding)
- ``rollback``   — rolling back, and a failed release's watch over its site (rollingBack, failed)
- ``failures``   — transient and terminal platform failures, the outcome of starting a swap
- ``overrides``  — a person's instructions, recorded as intent
- ``alerts``     — the outbox: alerts kept with the state until delivered
- ``schedule``   — when a release is next due (``next_due``) and when the timer must find it
- ``status``     — what a release is doing and waiting for, in plain words
"""

from shared.domain.lifecycle.admission import (
    Admission,
    admit,
    lift_quarantine,
    new_release,
    plan_redeploy,
    plan_retry,
    quarantine_refusal,
    redeploy_release_id,
    retry_release_ids,
    site_after,
    supersedable,
)
from shared.domain.lifecycle.alerts import (
    EVENTS,
    Delivery,
    alerts_delivered,
    alerts_sent,
    announce,
    due_alerts,
    with_alert,
)
from shared.domain.lifecycle.alerts import (
    MAX_ATTEMPTS as MAX_NOTIFICATION_ATTEMPTS,
)
from shared.domain.lifecycle.decide import Needs, decide, needs
from shared.domain.lifecycle.desired import DESIRED, allowed_weight, desired_weight
from shared.domain.lifecycle.draft import IllegalTransition, OverrideRefused
from shared.domain.lifecycle.failures import (
    swap_not_started,
    swap_start_unknown,
    swap_started,
    swap_withdrawn,
    terminal_failure,
    transient_failure,
)
from shared.domain.lifecycle.overrides import apply_override, override_refusal
from shared.domain.lifecycle.schedule import attention_at, next_due
from shared.domain.lifecycle.status import Status, new_version_share, status

__all__ = [
    "DESIRED",
    "EVENTS",
    "MAX_NOTIFICATION_ATTEMPTS",
    "Admission",
    "Delivery",
    "IllegalTransition",
    "Needs",
    "OverrideRefused",
    "Status",
    "admit",
    "alerts_delivered",
    "alerts_sent",
    "allowed_weight",
    "announce",
    "apply_override",
    "attention_at",
    "decide",
    "desired_weight",
    "due_alerts",
    "lift_quarantine",
    "needs",
    "new_release",
    "new_version_share",
    "next_due",
    "override_refusal",
    "plan_redeploy",
    "plan_retry",
    "quarantine_refusal",
    "redeploy_release_id",
    "retry_release_ids",
    "site_after",
    "status",
    "supersedable",
    "swap_not_started",
    "swap_start_unknown",
    "swap_started",
    "swap_withdrawn",
    "terminal_failure",
    "transient_failure",
    "with_alert",
]
