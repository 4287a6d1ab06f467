"""One PNG of a run: throughput and CPU per request of the gateway, the LiteLLM proxy and the floor.

``python -m bench`` draws it from the run's windows beside its table (``bench/results/latest.png``).
``python -m bench.chart FIGURES.json OUT.png`` draws it from figures written down by hand, such
as those of a run kept in the history (``bench/figures-run-18.json`` → ``docs/performance.png``).
The figures file holds the medians the chart shows::

    {"title": "...", "throughput": {"c=16, 0 ms": {"gateway": 218.7, ...}, ...},
     "cpu": {"c=16, 50 ms": {"gateway": 4.97, ...}, ...}}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.report import TWO_WORKERS, Figures

TARGETS = ("gateway", "proxy", "floor")
LABELS = {"gateway": "this gateway", "proxy": "LiteLLM proxy", "floor": "SDK floor (FastAPI + LiteLLM)"}
COLOURS = {"gateway": "#1f77b4", "proxy": "#d62728", "floor": "#7f7f7f"}
THROUGHPUT = (("c=16, 0 ms", "c16-0ms"), ("c=64, 0 ms", "c64-0ms"), ("c=16, 50 ms", "c16-50ms"))
CPU = (("c=16, 50 ms", "c16-50ms"), ("c=64, 0 ms", "c64-0ms"))
Series = dict[str, dict[str, float]]
# The figures of the run docs/performance.md shows, and the chart drawn from them there.
ROOT_FIGURES = Path(__file__).with_name("figures-run-18.json")


def figures_of_run(results: dict[str, Any]) -> dict[str, Any]:
    """The chart's figures from a run's results (``latest.json``): medians over rounds."""
    figures = Figures(results["windows"])
    throughput: Series = {}
    for label, scenario in THROUGHPUT:
        throughput[label] = _present({target: figures.median(target, scenario, "rps") for target in TARGETS})
    two = {target: figures.median(name, "c64-0ms", "rps") for target, name in TWO_WORKERS.items()}
    throughput["c=64, 0 ms, 2 workers"] = _present(two)
    cpu: Series = {}
    for label, scenario in CPU:
        cpu[label] = _present({target: figures.median(target, scenario, "cpu_ms_per_request") for target in TARGETS})
    return {"title": "Latest run", "throughput": _nonempty(throughput), "cpu": _nonempty(cpu)}


def _present(values: dict[str, float | None]) -> dict[str, float]:
    return {key: value for key, value in values.items() if value is not None}


def _nonempty(series: Series) -> Series:
    return {label: values for label, values in series.items() if values}


def draw(figures: dict[str, Any], out: Path) -> None:
    """Two grouped bar charts side by side: requests per second, and CPU ms per request."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), width_ratios=(3, 2))
    _bars(left, figures["throughput"], "requests per second (higher is better)", "{:.0f}")
    _bars(right, figures["cpu"], "CPU ms per request (lower is better)", "{:.2f}")
    handles = [Patch(color=COLOURS[target]) for target in TARGETS]
    fig.legend(handles, [LABELS[target] for target in TARGETS], loc="lower center", ncol=3, frameon=False)
    fig.suptitle(figures.get("title", ""), fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _bars(axes: Any, series: Series, title: str, value_format: str) -> None:
    width = 0.8 / len(TARGETS)
    for group, values in enumerate(series.values()):
        for index, target in enumerate(TARGETS):
            if target not in values:
                continue
            x = group + (index - (len(TARGETS) - 1) / 2) * width
            bar = axes.bar(x, values[target], width, color=COLOURS[target])
            axes.bar_label(bar, labels=[value_format.format(values[target])], fontsize=7, padding=2)
    axes.set_xticks(range(len(series)), list(series), fontsize=8)
    axes.set_title(title, fontsize=10)
    axes.spines[["top", "right"]].set_visible(False)
    axes.margins(y=0.12)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.chart FIGURES.json|RESULTS.json OUT.png", file=sys.stderr)
        return 2
    document = json.loads(Path(argv[0]).read_text())
    figures = figures_of_run(document) if "windows" in document else document
    draw(figures, Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
