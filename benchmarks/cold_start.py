"""Cold start: fresh-process import time of function_app, against the azure.functions floor and an eager build.

The host imports function_app.py on every cold start. Baselines, measured in the same run:
- floor: `import azure.functions` alone (no app can import faster);
- eager: function_app plus the SDKs it uses, as if they were imported at module level;
- telemetry eager: function_app plus the Azure Monitor distro, as if telemetry were set up at import;
- with COLD_START_AGAINST=<git revision>: function_app as it was at that revision, checked out in a
  temporary worktree and imported by the same interpreter (e.g. the commit before a change).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 9

CASES = {
    "floor (azure.functions)": "import azure.functions",
    "function_app": "import function_app",
    "eager (function_app + SDKs)": (
        "import function_app, azure.data.tables, azure.identity, azure.mgmt.web, azure.servicebus"
    ),
    "telemetry eager (+ distro)": "import function_app, azure.monitor.opentelemetry",
}


def measure(code: str, cwd: Path = ROOT) -> float:
    samples = []
    env = {k: v for k, v in os.environ.items() if k != "APPLICATIONINSIGHTS_CONNECTION_STRING"}
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=cwd, check=True, env=env)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure_at(revision: str) -> float:
    """``import function_app`` as it was at ``revision`` (a temporary worktree, removed after)."""
    folder = Path(tempfile.mkdtemp(prefix="cold-start-"))
    tree = folder / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), revision], cwd=ROOT, check=True, capture_output=True
    )
    try:
        return measure("import function_app", cwd=tree)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    results = {name: measure(code) for name, code in CASES.items()}
    against = os.environ.get("COLD_START_AGAINST")
    if against:
        results[f"function_app at {against}"] = measure_at(against)
    floor = results["floor (azure.functions)"]
    for name, seconds in results.items():
        print(f"  {name:32s} {seconds * 1000:7.0f} ms   {seconds / floor:5.2f}x floor")
    app, eager = results["function_app"], results["eager (function_app + SDKs)"]
    print(
        f"  function_app costs {((app - floor) * 1000):.0f} ms above the floor; eager imports would add "
        f"{((eager - app) * 1000):.0f} ms ({eager / app:.2f}x)"
    )
    if against:
        before = results[f"function_app at {against}"]
        print(f"  function_app now / at {against}: {app / before:.2f}x")


if __name__ == "__main__":
    main()
