"""The two commands on a fresh clone, as CI and a newcomer run them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.fresh_clone import ROOT, run

pytestmark = pytest.mark.e2e


def test_make_run_on_a_fresh_clone_shows_the_whole_loop(tmp_path: Path) -> None:
    """make run, a tracked completion, its trace read back from the embedded store (bounded)."""
    timings = run(tmp_path, venv=ROOT / ".venv", timeout_s=240)
    assert timings.insertion_id
    assert timings.loop_s < 60


def test_make_test_is_what_ci_runs_on_a_fresh_clone(tmp_path: Path) -> None:
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(tmp_path / "clone")], check=True, timeout=120)
    ci = (tmp_path / "clone" / ".ci" / "run").read_text()
    assert "make test" in ci
    plan = subprocess.run(
        ["make", "-n", "test", f"VENV={ROOT / '.venv'}"], cwd=tmp_path / "clone", capture_output=True, text=True
    )
    assert plan.returncode == 0, plan.stderr
    for step in ("ensure-redis.sh", "ruff check", "mypy", "pytest"):
        assert step in plan.stdout, (step, plan.stdout)
