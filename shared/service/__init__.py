"""The service layer: load -> observe -> decide -> apply effects -> save, and nothing else.

Every write is conditional on the ETag it read. On a conflict the whole cycle runs again from a
fresh read, a bounded number of times. Platform failures are classified: transient ones leave the
state as it was (counted in the audit and retried on a later tick, deadlines still running);
terminal ones take the release down its rollback path.

- ``intake``    — events and retries become releases
- ``reconcile`` — one release's tick, the claimed swap, the in-process timer
- ``scheduling`` — fan-out: the timer's work messages, and a worker's message
- ``overrides`` — a person's instructions, and the queries
- ``waves``     — rollouts over several sites: per-site releases created wave by wave
- ``base``      — the commit of one decision and what follows it (alerts, the next work message)
"""

from shared.service.base import IngestResult, ReconcileResult, TickReport, TooManyConflicts
from shared.service.intake import Intake, NothingToRedeploy
from shared.service.overrides import NotQuarantined, Overrides
from shared.service.reconcile import Reconciler
from shared.service.scheduling import Dispatcher, DispatchReport
from shared.service.waves import RolloutResult, Rollouts


class ReleaseService(Rollouts, Intake, Reconciler, Dispatcher, Overrides):
    """The controller's use cases over its ports (see ``shared.ports``)."""


__all__ = [
    "DispatchReport",
    "IngestResult",
    "NotQuarantined",
    "NothingToRedeploy",
    "ReconcileResult",
    "ReleaseService",
    "RolloutResult",
    "TickReport",
    "TooManyConflicts",
]
