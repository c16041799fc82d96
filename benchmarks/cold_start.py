"""Cold start: fresh-process import time of function_app, against the azure.functions floor and an eager build.

The host imports function_app.py on every cold start. Baselines, measured in the same run:
- floor: `import azure.functions` alone (no app can import faster);
- eager: function_app plus the SDKs it uses, as if they were imported at module level.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
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
}


def measure(code: str) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    results = {name: measure(code) for name, code in CASES.items()}
    floor = results["floor (azure.functions)"]
    for name, seconds in results.items():
        print(f"  {name:32s} {seconds * 1000:7.0f} ms   {seconds / floor:5.2f}x floor")
    app, eager = results["function_app"], results["eager (function_app + SDKs)"]
    print(
        f"  function_app costs {((app - floor) * 1000):.0f} ms above the floor; eager imports would add "
        f"{((eager - app) * 1000):.0f} ms ({eager / app:.2f}x)"
    )


if __name__ == "__main__":
    main()
