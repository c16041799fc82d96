"""The README's demo command runs to the end by itself and shows both outcomes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_ships_a_good_build_and_rolls_back_a_bad_one():
    done = subprocess.run(
        [sys.executable, "-m", "devstack.demo"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "   -> succeeded" in out
    assert "   -> rolledBack: " in out
    assert "Production now: 1.1.0 100%" in out
    assert "Staging slot runs: 1.1.0" in out
    data_dir = next(line.split("data in ", 1)[1] for line in out.splitlines() if "data in " in line)
    assert not Path(data_dir).exists(), "the demo removes the storage data it made"
