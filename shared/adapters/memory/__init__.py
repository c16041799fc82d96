"""In-memory implementations of every port: for unit tests of the service layer and for trying the
controller without Azure. They keep the same contracts as the Azure adapters (ETags, atomic
commits, transient/terminal errors) so the service cannot tell the difference."""

from shared.adapters.memory.doubles import FakeClock, RecordingNotifier, RecordingWorkQueue
from shared.adapters.memory.platform import InMemorySlotPlatform, SiteModel, SlotModel, SwapOp
from shared.adapters.memory.scripted import ScriptedAnalyzer, ScriptedValidator, healthy
from shared.adapters.memory.store import InMemoryReleaseStore, summarize

__all__ = [
    "FakeClock",
    "InMemoryReleaseStore",
    "InMemorySlotPlatform",
    "RecordingNotifier",
    "RecordingWorkQueue",
    "ScriptedAnalyzer",
    "ScriptedValidator",
    "SiteModel",
    "SlotModel",
    "SwapOp",
    "healthy",
    "summarize",
]
