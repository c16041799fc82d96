"""The README's demo commands, run as a person runs them: the tour ends by itself, checks its own
outcomes and leaves nothing behind; `--serve` prints commands that work when pasted, and stops
everything on SIGTERM."""

from __future__ import annotations

import faulthandler
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def watchdog():
    """Ends the run with every thread's stack if the demo goes silent and a read blocks."""
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def own_tmp(tmp_path):
    """The demo's temporary files go here, so that whatever it leaves behind can be seen."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    env = {**os.environ, "TMPDIR": str(folder), "PYTHONUNBUFFERED": "1"}  # lines as they come, as on a terminal
    for name in list(env):
        if name.startswith("RELEASECTL_"):
            del env[name]
    return folder, env


def test_the_demo_ships_a_good_build_and_rolls_back_a_bad_one_and_checks_it(own_tmp):
    folder, env = own_tmp
    done = subprocess.run(
        [sys.executable, "-m", "devstack.demo"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "$ releasectl publish -f " in out and "published web-1.1.0 on Service Bus" in out
    assert "--via http" in out
    assert "-> releasectl exit code 0 (succeeded)" in out
    assert "-> releasectl exit code 1 (rolled back)" in out
    assert "shifting, step 1/2, new 20%" in out, "progress is shown while the release runs"
    assert "Production now: 1.1.0 100%" in out
    assert "Staging slot runs: 1.1.0" in out
    assert "Demo checked" in out
    assert list(folder.iterdir()) == [], "the demo removes every file it made"


def _start(env: dict[str, str], *args: str) -> subprocess.Popen:
    """The demo in a process group of its own, as a terminal runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "devstack.demo", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen, sig: int) -> tuple[int, str]:
    """Signal the demo's whole process group (as Ctrl-C in a terminal does) and collect the rest."""
    try:
        os.killpg(process.pid, sig)
        rest, _ = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        rest, _ = process.communicate()
        raise AssertionError(f"the demo did not stop within 90 s:\n{rest[-3000:]}") from None
    return process.returncode, rest


def _azurite_pid(out: str) -> int:
    """The PID of the Azurite the demo started, as it prints it on its first line."""
    return int(out.split("(Azurite pid ", 1)[1].split(")", 1)[0])


def _read_until(process: subprocess.Popen, marker: str, timeout: float) -> str:
    """The demo's output up to a line holding ``marker`` (the watchdog ends a read that blocks)."""
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError(f"no {marker!r} in the demo's output:\n{''.join(seen)[-3000:]}")


def test_serve_prints_commands_that_work_when_pasted_and_sigterm_stops_everything(own_tmp):
    folder, env = own_tmp
    process = _start(env, "--serve")
    try:
        out = _read_until(process, "releasectl rejections", timeout=120)
        assert "1) CI publishes" not in out, "--serve alone does not replay the tour"
        assert "subscription 00000000-0000-0000-0000-000000000001, resource group rg-demo" in out
        exports = dict(
            shlex.split(line.strip().removeprefix("export "))[0].split("=", 1)
            for line in out.splitlines()
            if line.strip().startswith("export RELEASECTL_")
        )
        assert set(exports) >= {"RELEASECTL_API", "RELEASECTL_SERVICEBUS_CONNECTION", "RELEASECTL_SIGNING_KEY"}
        pasted = next(line.strip() for line in out.splitlines() if line.strip().startswith("releasectl publish"))
        argv = shlex.split(pasted)
        shell = {**env, **exports}

        def pasted_releasectl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
            command = [sys.executable, "-m", "releasectl", *args]
            return subprocess.run(
                command, check=False, env=shell, cwd=ROOT, capture_output=True, text=True, timeout=timeout
            )

        published = pasted_releasectl(*argv[1:], "--wait", "--interval", "1", "--timeout", "2m", timeout=150)
        assert published.returncode == 0, published.stdout + published.stderr
        assert "web-1.3.0 1.3.0 on contoso-web: succeeded" in published.stdout
        listed = pasted_releasectl("list", "--output", "json")
        assert listed.returncode == 0, listed.stderr
        assert '"web-1.3.0"' in listed.stdout
        azurite_pid = _azurite_pid(out)
    finally:
        code, rest = _stop(process, signal.SIGTERM)
    assert code == 0, rest[-3000:]
    assert "Stopped: everything the demo started is stopped" in rest
    with pytest.raises(ProcessLookupError):
        os.kill(azurite_pid, 0)  # Azurite, which the demo started, is gone
    assert list(folder.iterdir()) == [], "SIGTERM leaves no files behind"


def test_ctrl_c_during_the_tour_stops_everything_and_fails(own_tmp):
    """A tour cut short has not shown what it should: non-zero, and nothing left running or on disk."""
    folder, env = own_tmp
    process = _start(env)
    out = _read_until(process, "1) CI publishes", timeout=120)
    code, rest = _stop(process, signal.SIGINT)
    assert code == 130, rest[-3000:]
    assert "Azurite had stopped" not in rest, "stopping is not mistaken for a crash"
    with pytest.raises(ProcessLookupError):
        os.kill(_azurite_pid(out), 0)
    assert list(folder.iterdir()) == [], "Ctrl-C leaves no files behind"
