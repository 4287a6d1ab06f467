"""make bench draws one PNG: throughput and CPU per request against the proxy and the SDK floor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from bench.chart import ROOT_FIGURES, draw, figures_of_run, main


def window(target: str, scenario: str, round_no: int, rps: float, cpu: float) -> dict[str, Any]:
    return {"target": target, "scenario": scenario, "round": round_no, "warmup": False,
            "rps": rps, "cpu_ms_per_request": cpu, "errors": 0}  # fmt: skip


def test_a_runs_figures_are_the_medians_over_rounds() -> None:
    windows = [window("gateway", "c64-0ms", r, rps, 5.0) for r, rps in enumerate((200.0, 210.0, 260.0))]
    windows += [window("proxy", "c64-0ms", r, 90.0, 11.0 + r) for r in range(3)]
    windows += [window("gateway-2w", "c64-0ms", r, 360.0, 5.0) for r in range(3)]
    windows.append({**window("gateway", "c64-0ms", 9, 1.0, 99.0), "warmup": True})
    figures = figures_of_run({"windows": windows})
    assert figures["throughput"] == {
        "c=64, 0 ms": {"gateway": 210.0, "proxy": 90.0},
        "c=64, 0 ms, 2 workers": {"gateway": 360.0},
    }
    assert figures["cpu"] == {"c=64, 0 ms": {"gateway": 5.0, "proxy": 12.0}}


def test_the_chart_is_a_png_of_both_panels(tmp_path: Path) -> None:
    out = tmp_path / "chart.png"
    draw(json.loads(ROOT_FIGURES.read_text()), out)
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.width > 1000
        assert image.height > 400


def test_the_documented_chart_is_drawn_from_the_kept_figures(tmp_path: Path) -> None:
    assert main([str(ROOT_FIGURES), str(tmp_path / "performance.png")]) == 0
    assert (tmp_path / "performance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "performance.png" in (ROOT_FIGURES.parents[1] / "docs" / "performance.md").read_text()
