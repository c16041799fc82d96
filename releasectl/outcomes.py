"""What a release ended as, as an exit code a pipeline can branch on."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Exit(IntEnum):
    SUCCEEDED = 0
    ROLLED_BACK = 1
    USAGE = 2  # as argparse answers a usage error
    FAILED = 3
    CANCELLED = 4  # cancelled, or superseded by a newer release before it reached users
    WAITING_FOR_A_PERSON = 5  # an approval or an inconclusive pause outlasted --timeout
    TIMED_OUT = 6  # still moving on its own when --timeout ran out
    REJECTED = 7  # the controller refused the event or the request (invalid, unauthorized, policy)
    UNREACHABLE = 8  # the controller or Service Bus could not be reached


MEANINGS = {
    Exit.SUCCEEDED: "the release succeeded (or the command did what it was asked)",
    Exit.ROLLED_BACK: "the release was rolled back: production serves the previous version",
    Exit.USAGE: "usage error: a flag, a file or an environment variable is missing or wrong",
    Exit.FAILED: "the release failed: the controller could not restore a known-good state; a person must act",
    Exit.CANCELLED: "the release was cancelled or superseded before it reached users",
    Exit.WAITING_FOR_A_PERSON: "the release waits for a person (an approval, or an inconclusive pause) past --timeout",
    Exit.TIMED_OUT: "the release was still in progress when --timeout ran out",
    Exit.REJECTED: "the controller refused the event or the request (invalid, unauthorized, or against the policy)",
    Exit.UNREACHABLE: "the controller or Service Bus could not be reached",
}

FINAL = {
    "succeeded": Exit.SUCCEEDED,
    "rolledBack": Exit.ROLLED_BACK,
    "failed": Exit.FAILED,
    "cancelled": Exit.CANCELLED,
}


def is_final(view: dict[str, Any]) -> bool:
    return view.get("phase") in FINAL


def waits_for_a_person(view: dict[str, Any]) -> bool:
    """An approval gate, or a pause (inconclusive analysis, or a person's): nothing moves by itself."""
    return view.get("phase") == "awaitingApproval" or bool(view.get("paused"))


def exit_for(view: dict[str, Any]) -> Exit:
    return FINAL.get(str(view.get("phase")), Exit.TIMED_OUT)
