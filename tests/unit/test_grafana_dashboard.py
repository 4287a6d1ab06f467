"""The Grafana dashboard queries only metrics and labels the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from proxy_core.adapters.prometheus_metrics import PrometheusMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "proxy-core-dashboard.json"
_METRIC = re.compile(r"\bgateway_[a-z_]+")
_GROUPING = re.compile(r"\bby \(([^)]*)\)")
_MATCHER = re.compile(r"([a-z_]+)\s*=~?\s*\"")


def _exported() -> dict[str, set[str]]:
    """Every sample name on a page where each metric was reported once, with its label names."""
    metrics = PrometheusMetrics()
    metrics.request("/health", "GET", 200, 0.01)
    metrics.completion("p", "chat_completions", "success")
    metrics.provider_duration("p", "chat_completions", 0.1)
    metrics.overhead("p", "chat_completions", 0.001)
    metrics.store_error("record")
    metrics.breaker_state("rollout_store_writes", "open")
    metrics.traces_wait("p", "complete", 1.0)
    metrics.spans("p", "exported", 1)
    metrics.spool_depth("p", 1)
    page, _ = metrics.render()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(page.decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def _queries() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in document["panels"] for target in panel.get("targets", [])]


def test_every_query_names_an_exported_metric_and_its_labels() -> None:
    exported = _exported()
    queries = _queries()
    assert len(queries) >= 12
    for query in queries:
        used = set(_METRIC.findall(query))
        assert used, query
        assert used <= exported.keys(), (query, used - exported.keys())
        labels = set.union(*(exported[name] for name in used))
        for grouping in _GROUPING.findall(query):
            assert {label.strip() for label in grouping.split(",")} <= labels, query
        assert set(_MATCHER.findall(query)) <= labels, query


def test_it_shows_what_operators_watch() -> None:
    document = json.loads(DASHBOARD.read_text())
    titles = " | ".join(panel["title"] for panel in document["panels"]).lower()
    for wanted in ("by route", "errors", "overhead", "provider latency", "spans", "spool depth", "breaker"):
        assert wanted in titles, wanted
    assert {variable["name"] for variable in document["templating"]["list"]} == {"datasource", "project", "route"}
