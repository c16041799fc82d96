"""The deployed requirements are a complete, hashed lock of requirements.in, and every third-party
module the app imports is a direct, pinned dependency."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]+\])?==([^\s\\;]+)")
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"yaml": "pyyaml", "jwt": "pyjwt", "azure": "azure-", "opentelemetry": "opentelemetry-"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, tuple[str, list[str]]]:
    entries: dict[str, tuple[str, list[str]]] = {}
    text = (ROOT / "requirements.txt").read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"requirements.txt: not an exact pin: {line!r}"
        entries[_norm(match[1])] = (match[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return entries


def _direct() -> dict[str, str]:
    pins = {}
    for raw in (ROOT / "requirements.in").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            match = PIN.match(line)
            assert match, f"requirements.in: not an exact pin: {line!r}"
            pins[_norm(match[1])] = match[2]
    return pins


def test_every_locked_package_is_pinned_and_hashed():
    locked = _locked()
    assert len(locked) >= len(_direct())
    for name, (_, hashes) in locked.items():
        assert hashes, f"{name} has no hash"


def test_the_lock_holds_every_direct_dependency_at_its_pin():
    locked = _locked()
    for name, version in _direct().items():
        assert name in locked, f"{name} is in requirements.in but not locked; run `make lock`"
        assert locked[name][0] == version, f"{name}: requirements.in says {version}, the lock {locked[name][0]}"


def test_the_lock_names_no_index_or_local_path():
    text = (ROOT / "requirements.txt").read_text()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        assert not stripped.startswith(("-i", "--index", "--extra-index", "-f", "--find-links", "-e", "file:")), line


def test_every_third_party_import_of_the_app_is_a_direct_dependency():
    direct = _direct()
    local = {"shared", "functions", "function_app"}
    imported: set[str] = set()
    for path in [ROOT / "function_app.py", *(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in local}
    assert third_party, "the scan found no third-party imports at all"
    for module in sorted(third_party):
        wanted = DISTRIBUTIONS.get(module, _norm(module))
        # a namespace package ("azure-") is satisfied by any of its distributions
        found = any(n.startswith(wanted) for n in direct) if wanted.endswith("-") else wanted in direct
        assert found, f"the app imports {module!r} but requirements.in does not pin it"
