"""A cold worker's first HTTP answer (start, import, build, first request) against a warm worker's answer.

A fresh Python process imports function_app, finds the `list_releases` function as the host indexes
it, and answers one GET /api/releases on Azurite (the composition root is built on that first call:
settings, policy, table client); then the same process answers the same request again, warm. The
baselines, measured in the same run: a fresh process that only imports azure.functions (the floor of
any cold start), and the warm answer.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devstack.authority import principal_header, write_policy
from devstack.azurite import start_azurite

ROOT = Path(__file__).resolve().parents[1]
RUNS = 7
WARM = 50

WORKER = """
import json, sys, time
import azure.functions as func
import function_app
functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
handler = functions["list_releases"].get_user_function()
principal = sys.argv[1]

def ask():
    req = func.HttpRequest("GET", "http://localhost/api/releases", headers={"x-ms-client-principal": principal},
                           params={}, body=b"")
    response = handler(req)
    assert response.status_code == 200, response.get_body()

ask()
first = time.time()
samples = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    ask()
    samples.append(time.perf_counter() - started)
samples.sort()
print(json.dumps({"first": first, "warm": samples[len(samples) // 2]}))
"""


def main() -> None:
    azurite = start_azurite()
    folder = Path(tempfile.mkdtemp(prefix="bench-first-answer-"))
    try:
        policy = write_policy(folder, subscription="00000000-0000-0000-0000-000000000001", resource_group="rg")
        env = {
            **os.environ,
            "RELEASE_STORE_CONNECTION": azurite.connection_string,
            "RELEASE_STORE_TABLE_PREFIX": "benchfirst",
            "RELEASE_POLICY_PATH": str(policy),
            "SLOT_PLATFORM": "memory",
            "WEBSITE_AUTH_ENABLED": "True",
            "RELEASE_SIGNING_KEY_local": "bench-key-made-for-this-run",
        }
        principal = principal_header("Bench", ("reader",))
        floors, colds, warms = [], [], []
        for _ in range(RUNS):
            started = time.time()
            subprocess.run([sys.executable, "-c", "import azure.functions"], cwd=ROOT, check=True)
            floors.append(time.time() - started)
            started = time.time()
            done = subprocess.run(
                [sys.executable, "-c", WORKER, principal, str(WARM)],
                cwd=ROOT,
                env=env,
                check=False,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise SystemExit(f"the worker failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout)
            colds.append(result["first"] - started)
            warms.append(result["warm"])
        floor, cold, warm = (statistics.median(x) for x in (floors, colds, warms))
        rows = [
            ("floor: a fresh process importing azure.functions", floor, "1.00x"),
            ("cold: start, import, build, first answer", cold, f"{cold / floor:.2f}x floor"),
            ("warm: the same request, answered again", warm, f"cold is {cold / warm:.0f}x warm"),
        ]
        for what, seconds, ratio in rows:
            print(f"  {what:50s} {seconds * 1000:7.1f} ms   {ratio}")
        print(f"  the first answer costs {(cold - floor) * 1000:.0f} ms above the floor (build + first storage call)")
    finally:
        azurite.stop()
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
