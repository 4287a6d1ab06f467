"""What a benchmark run records beside its figures: server logs, the environment, the PII table.

None of it is a figure; it is what a reader needs to trust the figures (no hidden errors in
the servers' logs, the commit and machine measured) or to reproduce them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.plan import Plan
from bench.servers import REPO, Target

LOG_ERROR_MARKERS = (" ERROR ", "ERROR:", "CRITICAL")
_LOG_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2}[ T])?\d{2}:\d{2}:\d{2}([,.]\d+)?\s*(-\s*)?")
_LOG_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def log_problems(targets: dict[str, Target]) -> dict[str, dict[str, Any]]:
    """Error and warning records of each server's log, grouped by message (evidence, not figures)."""
    problems = {}
    for key, target in targets.items():
        if target.process is None:
            continue
        lines = target.process.log_path.read_text(errors="replace").splitlines()
        kinds: Counter[str] = Counter()
        warnings: Counter[str] = Counter()
        for line in lines:
            if any(marker in line for marker in LOG_ERROR_MARKERS):
                kinds[_message(line)] += 1
            elif "WARNING" in line:
                warnings[_message(line)] += 1
        problems[key] = {
            "lines": len(lines),
            "errors": sum(kinds.values()),
            "tracebacks": sum("Traceback (most recent call last)" in line for line in lines),
            "warnings": sum(warnings.values()),
            "error_kinds": kinds.most_common(5),
            "warning_kinds": warnings.most_common(3),
            "log": str(target.process.log_path.relative_to(REPO)),
        }
    return problems


def _message(line: str) -> str:
    """A log line without its timestamp and ids, so that repeats of one event group together."""
    return _LOG_IDS.sub("<id>", _LOG_PREFIX.sub("", line.strip()))[:200]


def pii_table() -> str | None:
    """The PII redaction micro-benchmark's own table (``bench/pii_bench.py``), if it runs."""
    script = Path(__file__).with_name("pii_bench.py")
    if not script.exists():
        return None
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=REPO, timeout=300)
    return result.stdout.strip() or None


def environment(plan: Plan) -> dict[str, Any]:
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "mode": plan.mode,
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "litellm": metadata.version("litellm"),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "wrk",
        "sanitizer": f"{plan.sanitizer} (pii_defaults.mode)",
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_gateway_files": len(_git("status", "--porcelain", "proxy_core").splitlines()),
        "plan": {key: str(value) for key, value in asdict(plan).items()},
    }


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, check=False)
    return result.stdout.strip()


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
