"""Turn a run's raw windows into the markdown report: figures, ratios, targets, evidence.

Every figure is the median over rounds of one window per round (warm-ups excluded). Added
latency is computed per round against the direct target's window of the same round and
scenario, then the median is taken. Ratios are taken between those medians, so they come from
one run, measured side by side.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

MAIN = ("direct", "gateway", "proxy", "floor")
TWO_WORKERS = {"gateway": "gateway-2w", "proxy": "proxy-2w"}
RSS_LIMIT_MB = 400.0
RSS_GROWTH_LIMIT = 0.10
FOREIGN_CPU_NOTE = 0.10


class ScenarioLike(Protocol):
    """What the report reads of a scenario (read-only: scenarios are frozen)."""

    @property
    def key(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def delay_ms(self) -> int: ...
    @property
    def stream(self) -> bool: ...


class Figures:
    """Median figures per (target, scenario) from the windows of a run."""

    def __init__(self, windows: Sequence[dict[str, Any]]) -> None:
        self.windows = [window for window in windows if not window["warmup"] and not window.get("superseded")]

    def per_round(self, target: str, scenario: str, field: str) -> dict[int, float]:
        return {
            window["round"]: float(window[field])
            for window in self.windows
            if window["target"] == target and window["scenario"] == scenario and field in window
        }

    def median(self, target: str, scenario: str, field: str) -> float | None:
        values = list(self.per_round(target, scenario, field).values())
        return statistics.median(values) if values else None

    def added(self, target: str, scenario: str, field: str) -> float | None:
        """Median over rounds of (target − direct) for a latency field."""
        mine = self.per_round(target, scenario, field)
        direct = self.per_round("direct", scenario, field)
        deltas = [mine[r] - direct[r] for r in mine if r in direct]
        return statistics.median(deltas) if deltas else None


@dataclass
class Row:
    label: str
    value: Callable[[str], float | None]
    digits: int = 1
    direct: bool = True


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _rows(figures: Figures, results: dict[str, Any], scenarios: Sequence[ScenarioLike]) -> list[Row]:
    memory = results.get("memory", {})
    targets = results.get("targets", {})
    stream = next(s for s in scenarios if s.stream)
    chunks = results["environment"]["plan"].get("stream_chunks", "200")

    def med(scenario: str, field: str, scale: float = 1.0) -> Callable[[str], float | None]:
        def get(target: str) -> float | None:
            value = figures.median(target, scenario, field)
            return None if value is None else value * scale

        return get

    def added(scenario: str, field: str) -> Callable[[str], float | None]:
        return lambda target: None if target == "direct" else figures.added(target, scenario, field)

    def two_workers(target: str) -> float | None:
        return figures.median(TWO_WORKERS[target], "c64-0ms", "rps") if target in TWO_WORKERS else None

    def startup(field: str, scale: float = 1.0) -> Callable[[str], float | None]:
        def get(target: str) -> float | None:
            entry = targets.get(target)
            return None if entry is None or target == "direct" else entry[field] * scale

        return get

    def mem(field: str) -> Callable[[str], float | None]:
        return lambda target: memory[target][field] if target in memory else None

    return [
        Row("req/s, c=1, 0 ms", med("c1-0ms", "rps")),
        Row("req/s, c=16, 0 ms", med("c16-0ms", "rps")),
        Row("req/s, c=64, 0 ms", med("c64-0ms", "rps")),
        Row("req/s, c=64, 0 ms, 2 workers", two_workers, direct=False),
        Row("req/s, c=16, 50 ms", med("c16-50ms", "rps")),
        Row("latency p50 ms, c=1, 0 ms", med("c1-0ms", "p50_ms"), 2),
        Row("added latency p50 ms over direct, c=1, 0 ms", added("c1-0ms", "p50_ms"), 2),
        Row("latency p50 ms, c=16, 50 ms", med("c16-50ms", "p50_ms")),
        Row("latency p99 ms, c=16, 50 ms", med("c16-50ms", "p99_ms")),
        Row("added latency p50 ms over direct, c=16, 50 ms", added("c16-50ms", "p50_ms")),
        Row("added latency p99 ms over direct, c=16, 50 ms", added("c16-50ms", "p99_ms")),
        Row("CPU ms / request, c=16, 50 ms", med("c16-50ms", "cpu_ms_per_request"), 2),
        Row("CPU ms / request, c=64, 0 ms", med("c64-0ms", "cpu_ms_per_request"), 2),
        Row(
            f"stream ({chunks} chunks, c={stream.concurrency}): time to first byte p50 ms", med("stream", "ttfb_p50_ms")
        ),
        Row("stream: time to first byte p99 ms", med("stream", "ttfb_p99_ms")),
        Row("stream: streams/s", med("stream", "rps")),
        Row("stream: chunks/s", med("stream", "chunks_per_s"), 0),
        Row("stream: CPU µs / chunk", med("stream", "cpu_us_per_chunk")),
        Row(f"stream: CPU ms / stream of {chunks} chunks", med("stream", "cpu_ms_per_request"), 2),
        Row("peak RSS MB, largest process (one worker)", mem("peak_largest_mb"), direct=False),
        Row("peak RSS MB, whole process tree", mem("peak_total_mb"), direct=False),
        Row("requests served before the RSS reading", mem("requests_served"), 0, direct=False),
        Row("start-up s (spawn → health 200)", startup("startup_s"), 2, direct=False),
        Row("first completion ms after start-up", startup("first_request_ms"), 0, direct=False),
    ]


def _main_table(figures: Figures, results: dict[str, Any], scenarios: Sequence[ScenarioLike]) -> list[str]:
    labels = {key: entry["label"] for key, entry in results.get("targets", {}).items()}
    present = [key for key in MAIN if key in labels]
    header = ["figure", *(labels[key] for key in present)]
    ratios = [("gateway", "proxy", "gateway ÷ proxy"), ("gateway", "floor", "gateway ÷ floor")]
    ratios = [r for r in ratios if r[0] in labels and r[1] in labels]
    header += [label for *_, label in ratios]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for row in _rows(figures, results, scenarios):
        values = {key: (row.value(key) if (row.direct or key != "direct") else None) for key in present}
        if all(value is None for value in values.values()):
            continue
        cells = [row.label, *(_fmt(values[key], row.digits) for key in present)]
        for a, b, _ in ratios:
            ratio = None if row.label.startswith("requests served") else _ratio(values.get(a), values.get(b))
            cells.append("–" if ratio is None else f"{ratio:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


@dataclass
class Goal:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run


def _goals(figures: Figures, results: dict[str, Any]) -> list[Goal]:
    goals: list[Goal] = []

    def ratio_goal(name: str, goal: str, a: float | None, b: float | None, limit: float, at_least: bool) -> None:
        ratio = _ratio(a, b)
        if ratio is None:
            goals.append(Goal(name, goal, "not measured", None))
            return
        met = ratio >= limit if at_least else ratio <= limit
        goals.append(Goal(name, goal, f"{ratio:.2f}× ({_fmt(a, 2)} vs {_fmt(b, 2)})", met))

    ratio_goal(
        "throughput, c=64, 0 ms, 1 worker",
        "≥ 2× LiteLLM proxy",
        figures.median("gateway", "c64-0ms", "rps"),
        figures.median("proxy", "c64-0ms", "rps"),
        2.0,
        True,
    )
    ratio_goal(
        "throughput, c=64, 0 ms, 2 workers",
        "≥ 2× LiteLLM proxy",
        figures.median("gateway-2w", "c64-0ms", "rps"),
        figures.median("proxy-2w", "c64-0ms", "rps"),
        2.0,
        True,
    )
    cpu = figures.median("gateway", "c16-50ms", "cpu_ms_per_request")
    ratio_goal(
        "CPU ms / request, c=16, 50 ms",
        "≤ 0.5× LiteLLM proxy",
        cpu,
        figures.median("proxy", "c16-50ms", "cpu_ms_per_request"),
        0.5,
        False,
    )
    ratio_goal(
        "CPU ms / request, c=16, 50 ms",
        "≤ 1.3× floor",
        cpu,
        figures.median("floor", "c16-50ms", "cpu_ms_per_request"),
        1.3,
        False,
    )
    ratio_goal(
        "added latency p50, c=16, 50 ms",
        "≤ 0.5× LiteLLM proxy's",
        figures.added("gateway", "c16-50ms", "p50_ms"),
        figures.added("proxy", "c16-50ms", "p50_ms"),
        0.5,
        False,
    )
    ratio_goal(
        "added latency p99, c=16, 50 ms",
        "≤ 0.6× LiteLLM proxy's",
        figures.added("gateway", "c16-50ms", "p99_ms"),
        figures.added("proxy", "c16-50ms", "p99_ms"),
        0.6,
        False,
    )
    ratio_goal(
        "streaming CPU per stream of 200 chunks",
        "≤ 0.65× LiteLLM proxy's",
        figures.median("gateway", "stream", "cpu_ms_per_request"),
        figures.median("proxy", "stream", "cpu_ms_per_request"),
        0.65,
        False,
    )
    goals.extend(_memory_goals(results))
    errors = sum(int(window["errors"]) for window in results["windows"])
    windows = len(results["windows"])
    goals.append(Goal("errors", "none in any run", f"{errors} in {windows} windows (warm-ups included)", errors == 0))
    return goals


def _memory_goals(results: dict[str, Any]) -> list[Goal]:
    soak = [row for row in results.get("soak", []) if row["target"] == "gateway"]
    goal = f"≤ {RSS_LIMIT_MB:.0f} MB after 10 000 requests"
    if soak:
        first = soak[0]
        goals = [
            Goal(
                "peak RSS of one gateway worker",
                goal,
                f"{first['peak_largest_mb']:.1f} MB after {first['served']:,} requests",
                first["peak_largest_mb"] <= RSS_LIMIT_MB,
            )
        ]
        if len(soak) > 1:
            last = soak[-1]
            growth = last["peak_largest_mb"] / first["peak_largest_mb"] - 1
            goals.append(
                Goal(
                    "peak RSS growth of one gateway worker",
                    f"< {RSS_GROWTH_LIMIT:.0%} from {first['checkpoint']:,} to {last['checkpoint']:,} requests",
                    f"{growth:+.1%} ({first['peak_largest_mb']:.1f} → {last['peak_largest_mb']:.1f} MB)",
                    growth < RSS_GROWTH_LIMIT,
                )
            )
        return goals
    memory = results.get("memory", {}).get("gateway")
    if memory is None:
        return [Goal("peak RSS of one gateway worker", goal, "not measured", None)]
    served = int(memory["requests_served"])
    measured = f"{memory['peak_largest_mb']:.1f} MB after {served:,} requests"
    met = memory["peak_largest_mb"] <= RSS_LIMIT_MB if served >= 10_000 else None
    goals = [Goal("peak RSS of one gateway worker", goal, measured + ("" if met is not None else " (too few)"), met)]
    goals.append(Goal("peak RSS growth 10 000 → 50 000 requests", "< 10 %", "run `python -m bench --soak`", None))
    return goals


def _goal_lines(goals: Sequence[Goal]) -> list[str]:
    lines = ["| figure | goal | measured | met |", "|---|---|---|---|"]
    for goal in goals:
        met = "–" if goal.met is None else ("yes" if goal.met else "**no**")
        lines.append(f"| {goal.name} | {goal.goal} | {goal.measured} | {met} |")
    return lines


def _soak_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| target | requests served | peak RSS MB (one worker) | current RSS MB | req/s | CPU ms / request | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['label']} | {row['served']:,} | {row['peak_largest_mb']:.1f} | {row['current_largest_mb']:.1f} "
            f"| {row['rps']:.0f} | {row['cpu_ms_per_request']:.2f} | {row['errors']} |"
        )
    return lines


def _round_lines(figures: Figures, results: dict[str, Any]) -> list[str]:
    labels = {key: entry["label"] for key, entry in results.get("targets", {}).items()}
    lines = [
        "| target | scenario | req/s per round | CPU ms / request per round | p99 ms per round "
        "| CPU of other processes per round |",
        "|---|---|---|---|---|---|",
    ]
    seen = []
    for window in figures.windows:
        pair = (window["target"], window["scenario"])
        if pair not in seen:
            seen.append(pair)
    for target, scenario in sorted(seen, key=lambda pair: (list(labels).index(pair[0]), pair[1])):

        def series(field: str, digits: int, target: str = target, scenario: str = scenario) -> str:
            values = figures.per_round(target, scenario, field)
            return " / ".join(_fmt(values[r], digits) for r in sorted(values))

        foreign = figures.per_round(target, scenario, "foreign_share")
        others = " / ".join(f"{foreign[r]:.0%}" for r in sorted(foreign))
        lines.append(
            f"| {labels[target]} | {scenario} | {series('rps', 0)} | {series('cpu_ms_per_request', 2)} "
            f"| {series('p99_ms', 1)} | {others} |"
        )
    return lines


def _evidence_lines(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    integrity = results.get("integrity", {})
    completions = integrity.get("gateway_completions")
    if completions:
        spans = integrity.get("spans_received")
        recorded = integrity.get("insertion_ids_recorded")
        spans_text = "not read" if spans is None else f"{spans:,} ({spans / completions:.2f} per completion)"
        lines.append(
            f"- Gateway completions answered: {completions:,}; insertion ids recorded in Redis: {recorded:,}; "
            f"spans received by the Langfuse emulator: {spans_text}."
        )
    langfuse_cpu = [
        (window["side_cpu_s"].get("langfuse", 0.0), window["requests"])
        for window in results["windows"]
        if window["target"] == "gateway" and not window["warmup"]
    ]
    if langfuse_cpu and sum(r for _, r in langfuse_cpu):
        per_request = 1000 * sum(c for c, _ in langfuse_cpu) / sum(r for _, r in langfuse_cpu)
        lines.append(
            f"- The Langfuse emulator spent {per_request:.2f} ms CPU per gateway request ingesting its traces "
            "(its own process, not counted in the gateway's CPU; it competes for the same cores)."
        )
    for key, problems in results.get("log_problems", {}).items():
        label = results["targets"][key]["label"]
        lines.append(
            f"- {label}: {problems['errors']} error records ({problems['tracebacks']} tracebacks) and "
            f"{problems['warnings']} warnings in {problems['lines']} log lines (`{problems['log']}`)."
        )
        for message, count in problems["error_kinds"] + problems["warning_kinds"]:
            lines.append(f"  - {count} × `{message}`")
    repeated = [window for window in results["windows"] if window.get("superseded")]
    if repeated:
        lines.append(
            f"- {len(repeated)} window(s) were measured again because processes outside the run took "
            f"≥ {results['environment']['plan']['disturbed_share']} of a core during them; the least "
            "disturbed attempt counts (all attempts are in latest.json)."
        )
    figures = Figures(results["windows"])
    disturbed = [window for window in figures.windows if window.get("foreign_share", 0.0) >= FOREIGN_CPU_NOTE]
    if disturbed:
        labels = {key: entry["label"] for key, entry in results.get("targets", {}).items()}
        listed = "; ".join(
            f"{labels.get(w['target'], w['target'])} {w['scenario']} round {w['round']}: {w['foreign_share']:.0%}"
            for w in disturbed[:8]
        )
        lines.append(
            f"- {len(disturbed)} of the {len(figures.windows)} counted windows ran while processes outside the run "
            f"took ≥ {FOREIGN_CPU_NOTE:.0%} of a core (the machine is shared): {listed}."
        )
    elif figures.windows:
        lines.append(
            f"- No counted window ran while processes outside the run took ≥ {FOREIGN_CPU_NOTE:.0%} of a core."
        )
    steal = sum(window.get("steal_s", 0.0) for window in results["windows"])
    if steal > 1:
        lines.append(f"- The hypervisor took {steal:.1f} CPU seconds (steal time) during the windows.")
    background = results.get("background_cpu", {})
    if background:
        shares = ", ".join(f"{results['targets'][key]['label']} {share:.1%}" for key, share in background.items())
        lines.append(f"- CPU of each server while the others were measured (share of one core): {shares}.")
    return lines


def render(results: dict[str, Any], scenarios: Sequence[ScenarioLike]) -> tuple[str, bool]:
    """The markdown report and whether the run met every target without errors."""
    env = results["environment"]
    plan = env["plan"]
    figures = Figures(results["windows"])
    soak = env["mode"] == "soak"
    if soak:
        load = f"Soak: c=16, 0 ms provider, up to {plan['soak_max_s']} s per checkpoint. "
    else:
        load = (
            f"{plan['rounds']} round(s), {plan['window_s']} s windows after {plan['warmup_s']} s warm-up, "
            "medians over rounds. "
        )
    lines = [
        f"# proxy-core benchmark ({env['mode']} run, {env['date']})",
        "",
        f"{env['cpus']} CPUs ({env['cpu_model']}), Python {env['python']}, LiteLLM {env['litellm']}, {env['wrk']}. "
        + load
        + "Upstream: fake OpenAI-compatible provider in its own process (0 ms or 50 ms before answering), "
        f"deployments naming `{plan.get('provider_model', '?')}`. "
        f"Gateway at {env.get('commit', '?')}"
        + (
            f" with {env['uncommitted_gateway_files']} uncommitted file(s) under proxy_core/"
            if env.get("uncommitted_gateway_files")
            else ""
        )
        + f": tracked route, Redis, tracing to the Langfuse emulator, sanitizer {env['sanitizer']}. "
        "LiteLLM proxy: no database, no callbacks, no master key. One worker each unless noted.",
        "",
    ]
    if results.get("soak"):
        lines += ["## Memory soak", "", *_soak_lines(results["soak"]), ""]
    lines += ["## Figures", "", *_main_table(figures, results, scenarios), ""]
    goals = _goals(figures, results)
    if soak:
        goals = [goal for goal in goals if goal.met is not None]
    lines += ["## Targets", "", *_goal_lines(goals), ""]
    evidence = _evidence_lines(results)
    if evidence:
        lines += ["## Checks and logs", "", *evidence, ""]
    if figures.windows and not soak:
        lines += ["## Per round", "", *_round_lines(figures, results), ""]
    if results.get("pii_table"):
        lines += ["## PII redaction micro-benchmark (`bench/pii_bench.py`)", "", results["pii_table"], ""]
    lines.append(f"Run time {results['elapsed_s']:.0f} s.")
    ok = all(goal.met is not False for goal in goals)
    return "\n".join(lines), ok
