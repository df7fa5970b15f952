"""deploy/grafana/postsale.json: every query parses as PromQL, names only metrics and labels the
services export, and every Postsale metric is on the dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import pytest
from prometheus_client import REGISTRY

import postsale.runtime.metrics  # noqa: F401 - registers every metric

pytestmark = pytest.mark.unit

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "postsale.json"
SCRAPE_LABELS = {"job", "instance", "namespace", "pod", "service"}  # added by Prometheus, not by the services


def panels(items):
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def exported() -> dict[str, set[str]]:
    """Each series name the services export, with its labels."""
    series: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        if not family.name.startswith("postsale_"):
            continue
        name = f"{family.name}_total" if family.type == "counter" else family.name
        collector = REGISTRY._names_to_collectors[name]  # noqa: SLF001
        labels = set(collector._labelnames)  # noqa: SLF001
        if family.type == "counter":
            series[f"{family.name}_total"] = labels
        elif family.type == "histogram":
            for suffix in ("_bucket", "_count", "_sum"):
                series[f"{family.name}{suffix}"] = labels | ({"le"} if suffix == "_bucket" else set())
        else:
            series[family.name] = labels
    return series


def queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in panels(dashboard["panels"])
            for target in panel.get("targets", [])]


@pytest.mark.parametrize("title,expr", queries())
def test_each_query_is_promql_on_exported_metrics_and_labels(title, expr):
    concrete = expr.replace("$__rate_interval", "1m").replace("$job", ".*")
    promql_parser.parse(concrete)  # raises on a syntax error
    series = exported()
    names = set(re.findall(r"\bpostsale_[a-z_]+\b", concrete))
    assert names and names <= series.keys(), f"{title}: unknown {names - series.keys()}"
    allowed = set().union(*(series[name] for name in names)) | SCRAPE_LABELS
    used = {label.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", concrete)
            for label in group.split(",") if label.strip()}
    used |= set(re.findall(r"[{,]\s*([a-z_]+)\s*(?:=~|!~|!=|=)", concrete))
    assert used <= allowed, f"{title}: labels {used - allowed} are not on {names}"


def test_every_metric_is_on_the_dashboard_and_the_layout_is_sound():
    shown = {name for _, expr in queries() for name in re.findall(r"\bpostsale_[a-z_]+\b", expr)}
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in exported()}
    assert {f for f in families if not any(s.startswith(f) for s in shown)} == set()
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard["panels"]):
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    assert [variable["name"] for variable in dashboard["templating"]["list"]] == ["datasource", "job"]
