"""Gates: a webhook or a person says yes before the release goes on.

A webhook gate is asked on the tick after it is due (asking is I/O); a "no", an error or a timeout
rolls back. A person's approval is an override; while it waits, a canary keeps its step's weight
and its analysis keeps running.
"""

from __future__ import annotations

from shared.domain.lifecycle.desired import converge_weight, slot_still_runs_it
from shared.domain.lifecycle.draft import Draft
from shared.domain.lifecycle.judging import analyze, would
from shared.domain.model import Gate, Observation, Phase, ProviderKind, ReleaseSpec, WebhookStage


def webhook_stages(spec: ReleaseSpec) -> set[WebhookStage]:
    return {stage for p in spec.analysis.providers if p.kind is ProviderKind.WEBHOOK for stage in p.stages}


def gate_passed(d: Draft, obs: Observation, stage: WebhookStage) -> bool:
    """True when no webhook gates this stage or every gate said yes."""
    r = d.release
    if stage not in webhook_stages(r.spec) or stage in r.gates_passed:
        return True
    if r.gate_pending is not stage:
        d.update(gate_pending=stage)
        d.record("gate.asking", f"asking the webhook gate ({stage}) before going on")
        return False
    if obs.gates is None:
        return False
    refused = [g for g in obs.gates if not g.passed]
    d.update(gate_pending=None)
    if refused and r.spec.analysis.advisory:
        would(
            d, "roll back", f"webhook gate ({stage}) said no: {refused[0].detail}", gates=[g.detail for g in obs.gates]
        )
        d.update(gates_passed=(*r.gates_passed, stage))
        return True
    if refused:
        d.rollback(f"webhook gate ({stage}) said no: {refused[0].detail}", gates=[g.detail for g in obs.gates])
        return False
    d.update(gates_passed=(*r.gates_passed, stage))
    d.record("gate.passed", f"webhook gate ({stage}) said yes", gates=[g.detail for g in obs.gates])
    return True


def await_approval(d: Draft, gate: Gate) -> None:
    what = "before any user traffic" if gate is Gate.BEFORE_TRAFFIC else "before the swap into production"
    d.transition(
        Phase.AWAITING_APPROVAL,
        "approval.waiting",
        f"waiting for a person to approve {d.label} {what} (POST .../approve)",
        gate=gate,
    )


def awaiting_approval(d: Draft, obs: Observation) -> None:
    """Waiting for a person. Before traffic the slot gets none; before promotion a canary keeps its
    last step's weight and its analysis keeps judging it."""
    r, slots = d.release, obs.slots
    if slots is None or not slot_still_runs_it(d, slots.staging_release):
        return
    drift = "re-applying" if r.weight > 0 else "no user may reach a release before it is approved; removing the rule"
    if converge_weight(d, slots.weight, drift=drift) and r.weight > 0 and r.step_started_at is not None:
        analyze(d, obs)
