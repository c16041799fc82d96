"""The pipeline examples in docs/ci parse, call only releasectl commands and flags that exist, set
only environment variables releasectl reads, and publish a plan the controller would accept."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from releasectl import events
from releasectl.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["docs/ci/github-actions.yml", "docs/ci/azure-pipelines.yml"]
RELEASECTL_SOURCE = "\n".join(p.read_text() for p in (ROOT / "releasectl").glob("*.py"))
# ${{ expr }} (GitHub), $(macro) (Azure DevOps and shell), ${VAR…} and $VAR (shell): a placeholder each.
EXPANSIONS = re.compile(r"\$\{\{[^}]*\}\}|\$\([^)]*\)|\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")


def scripts(doc: object) -> list[str]:
    """Every shell script of a workflow or pipeline, wherever it sits."""
    found: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("run", "script", "inlineScript") and isinstance(value, str):
                found.append(value)
            else:
                found += scripts(value)
    elif isinstance(doc, list):
        for item in doc:
            found += scripts(item)
    return found


def environments(doc: object) -> set[str]:
    names: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "env" and isinstance(value, dict):
                names |= set(value)
            else:
                names |= environments(value)
    elif isinstance(doc, list):
        for item in doc:
            names |= environments(item)
    return names


def releasectl_calls(path: str) -> list[list[str]]:
    doc = yaml.safe_load((ROOT / path).read_text())
    calls = []
    for script in scripts(doc):
        for line in script.replace("\\\n", " ").splitlines():
            if line.strip().startswith("releasectl "):
                calls.append(shlex.split(EXPANSIONS.sub("x", line.strip()))[1:])
    return calls


@pytest.mark.parametrize("path", EXAMPLES)
def test_every_releasectl_call_parses_and_the_pipeline_publishes_and_waits(path):
    calls = releasectl_calls(path)
    assert calls, f"{path} never calls releasectl"
    for argv in calls:
        _parser().parse_args(argv)  # exits (SystemExit) on an unknown command or flag
    assert any(argv[0] == "publish" and "--wait" in argv for argv in calls)


@pytest.mark.parametrize("path", EXAMPLES)
def test_the_pipeline_sets_only_variables_releasectl_reads(path):
    names = environments(yaml.safe_load((ROOT / path).read_text()))
    ours = {n for n in names if n.startswith("RELEASECTL_")}
    assert ours, f"{path} sets no RELEASECTL_ variable"
    for name in ours | ({"SYSTEM_ACCESSTOKEN"} & names):
        assert f'"{name}"' in RELEASECTL_SOURCE, f"{path} sets {name}, which releasectl never reads"


@pytest.mark.parametrize("path", EXAMPLES)
def test_the_plan_it_publishes_is_one_the_controller_accepts(path):
    (argv,) = [a for a in releasectl_calls(path) if a[0] == "publish"]
    args = _parser().parse_args(argv)
    assert (ROOT / args.file).exists()
    args.file = str(ROOT / args.file)
    args.release_id, args.version, args.image = "web-7f3c9e1", "7f3c9e1", "contoso.azurecr.io/web@sha256:" + "0" * 64
    raw, release_id = events.encode(events.build(args))
    assert release_id == "web-7f3c9e1" and b'"weight":5' in raw
