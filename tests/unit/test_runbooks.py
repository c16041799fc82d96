"""Every step of the runbooks is a command that exists: each `releasectl …` they show parses with
releasectl's own parser, and each route they name is one the app serves."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from releasectl.cli import _parser

RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks.md"
TEXT = RUNBOOKS.read_text()
COMMANDS = sorted(set(re.findall(r"`(releasectl [^`]+)`", TEXT.replace("\n   ", " "))))


def test_the_runbooks_cover_what_operators_face():
    headings = re.findall(r"^## (.+)$", TEXT, re.M)
    assert headings == [
        "A bad release is in production",
        "A swap is stuck",
        "Our primary region is down",
        "A freeze",
        "Rotating a signing key",
    ]
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_in_the_runbooks_parses(command):
    words = shlex.split(command.replace("…", "x"))[1:]
    if words and words[0] in ("status", "audit", "wait") and len(words) == 1:
        words.append("ID")  # "`releasectl status ID`" is written with the placeholder; kept as is
    _parser().parse_args(words)


def test_every_route_in_the_runbooks_is_served():
    import azure.functions as func

    import function_app  # noqa: F401  (the app as deployed registers these blueprints)

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)  # get_functions() runs once per app
    for module in ("functions.http_api", "functions.dashboard"):
        app.register_functions(__import__(module, fromlist=["bp"]).bp)
    served = set()
    for fn in app.get_functions():
        for binding in fn.get_bindings_dict()["bindings"]:
            if binding["type"] == "httpTrigger":
                served.update((m, "/api/" + binding["route"]) for m in binding["methods"])
    patterns = [(str(m), re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(r)) + "$")) for m, r in served]
    named = set(re.findall(r"`(GET|POST) (/api/[^`]+)`", TEXT))
    assert named, "the runbooks name routes"
    for method, route in named:
        concrete = re.sub(r"\{[^}]+\}", "x", route)
        assert any(m.endswith(method) and p.match(concrete) for m, p in patterns), f"{method} {route} is not served"
