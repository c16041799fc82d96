"""A release the schedule holds after its validation passed waits: it neither runs its checks again
nor times out on the validation deadline, and goes on when the schedule opens."""

from __future__ import annotations

from shared.domain.model import Phase
from tests.builders import CANARY_EVENT, body, harness, ingest, person


def test_a_release_held_after_validation_waits_without_rechecking_or_timing_out():
    h = harness()
    release_id = ingest(h.service, body(CANARY_EVENT), message_id=None, source="http").release.id
    admin = person("ada")
    h.service.set_stop(True, actor=admin, reason="incident")
    for _ in range(20):
        if h.service.get(release_id).held:
            break
        h.tick(release_id, 15)
    held = h.service.get(release_id)
    assert held.phase is Phase.VALIDATING and held.held and "incident" in held.held
    entries = len(h.service.audit(release_id))
    rounds = h.validator.rounds
    for _ in range(40):  # 40 minutes: four times the validation deadline
        h.tick(release_id, 60)
    still = h.service.get(release_id)
    assert still.phase is Phase.VALIDATING, f"{still.phase}: {still.reason}"
    assert len(h.service.audit(release_id)) == entries, "nothing new to say while held"
    assert h.validator.rounds == rounds, "no check runs while held"
    h.service.set_stop(False, actor=admin, reason="over")
    h.tick(release_id, 60)
    assert h.phase(release_id) == Phase.SHIFTING
