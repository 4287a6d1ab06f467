"""CPU time and peak memory of a server's whole process tree, read from ``/proc``.

A server may fork workers (uvicorn ``--workers``) or helpers, so every figure is summed over
the root process and all its live descendants. CPU is ``utime + stime`` of each process plus
``cutime + cstime`` (children already reaped), so workers that exit inside a window are still
counted. Memory is ``VmHWM``, the kernel's high-water mark of resident memory per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (which may contain spaces)."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant, parents first."""
    children = _children_map()
    tree, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        tree.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds used so far by ``root``'s tree (including reaped children)."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
        ticks += sum(int(fields[index]) for index in (11, 12, 13, 14))
    return ticks / _TICKS_PER_S


def tree_cpu_seconds_fine(root: int) -> float:
    """CPU seconds of ``root``'s live tree to the nanosecond: the sum of every thread's run time
    (``/proc/<pid>/task/<tid>/schedstat``).

    ``utime``/``stime`` count in clock ticks (10 ms): over a quiet window of a few seconds that
    is an error of tens of percent. This misses threads (and children) that have already exited,
    so it is for processes whose threads live as long as they do, such as an asyncio server with
    its thread pool.
    """
    nanoseconds = 0
    for pid in process_tree(root):
        try:
            tasks = list((_PROC / str(pid) / "task").iterdir())
        except (FileNotFoundError, ProcessLookupError):
            continue
        for task in tasks:
            try:
                nanoseconds += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
    return nanoseconds / 1e9


def machine_cpu_seconds() -> tuple[float, float]:
    """CPU seconds processes on the machine have used (all cores) and lost to the hypervisor (steal).

    Against the run's own processes this shows how much CPU something else on the machine took
    during a window; on a shared machine that is what makes a window an outlier. Interrupt time
    is left out: it is charged to no process, and loopback traffic of the run itself (tens of
    thousands of requests per second against the fake provider) would show up as foreign.
    """
    with open(_PROC / "stat") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system) / _TICKS_PER_S, steal / _TICKS_PER_S


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(_PROC / str(pid) / "status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


@dataclass(frozen=True)
class Memory:
    """Resident memory of a tree in MB (10⁶ bytes): peak (``VmHWM``) and current (``VmRSS``),
    summed over the tree and of its largest process (a worker)."""

    peak_total_mb: float
    peak_largest_mb: float
    current_total_mb: float
    current_largest_mb: float
    processes: int


def tree_memory(root: int) -> Memory:
    """Peak and current RSS of ``root``'s tree; "largest" is the biggest single process (a worker)."""
    peaks, currents = [], []
    for pid in process_tree(root):
        peaks.append(_status_kib(pid, "VmHWM") * 1024 / 1e6)
        currents.append(_status_kib(pid, "VmRSS") * 1024 / 1e6)
    return Memory(
        peak_total_mb=sum(peaks),
        peak_largest_mb=max(peaks, default=0.0),
        current_total_mb=sum(currents),
        current_largest_mb=max(currents, default=0.0),
        processes=len(peaks),
    )
