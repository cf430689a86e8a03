"""deploy/grafana/baton.json names only series, and labels, that Baton really exports.

The exposition comes from a running app with metrics on, after requests that make every labelled
series appear; each PromQL expression of the dashboard (panel targets, also inside rows, and the
template variables' queries) is taken apart by a small tokenizer into series names, matcher
labels and grouping labels, and each must exist. A renamed metric or label then fails here
instead of leaving an empty panel in someone's dashboard."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from baton.core.signals import Refusal, SignalKind, Source
from baton.core.vocabulary import FeedEntryKind, RevocationCause
from baton.server.observability.metrics import Metrics
from baton.store.base import SignalCount
from tests.support import running_app

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "baton.json"
METRICS_TOKEN = "dashboard-scrape-credential"

# Labels Prometheus attaches to every series it scrapes (not in Baton's exposition).
TARGET_LABELS = frozenset({"job", "instance"})

# PromQL words that are not series names: functions, aggregations, operators and modifiers.
PROMQL_WORDS = frozenset(
    {
        # aggregation operators and their modifiers
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio", "by", "without",
        # binary operators and vector matching
        "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool",
        "offset", "atan2",
        # functions
        "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max",
        "clamp_min", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta",
        "deriv", "exp", "floor", "histogram_quantile", "histogram_count", "histogram_sum",
        "histogram_fraction", "holt_winters", "hour", "idelta", "increase", "irate",
        "label_join", "label_replace", "ln", "log2", "log10", "minute", "month",
        "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc",
        "sqrt", "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time",
        "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time",
        "stddev_over_time", "stdvar_over_time", "last_over_time", "present_over_time",
        "inf", "nan",
    }
)  # fmt: skip

IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S)


@dataclass
class Uses:
    """What one PromQL expression asks of the exposition."""

    series: set[str] = field(default_factory=set)
    matchers: dict[str, set[str]] = field(default_factory=dict)  # series -> labels matched on
    grouping: set[str] = field(default_factory=set)  # labels in by (...) / without (...)


def uses(expr: str) -> Uses:
    """Take a PromQL expression (or a Grafana `label_values(...)` query) apart."""
    found = Uses()
    variable = LABEL_VALUES.match(expr)
    if variable:
        expr = variable.group(1) or ""
        found.grouping.add(variable.group(2))
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals: label values, regexes
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors: [5m], [$__rate_interval]
    for match in re.finditer(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        found.grouping.update(IDENTIFIER.findall(match.group(1)))
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}", expr):
        labels = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", match.group(2)))
        name = match.group(1) or "__name__"  # a bare {…} selector names its series by matchers
        found.matchers.setdefault(name, set()).update(labels)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables outside strings
    expr = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", " ", expr)  # numbers, 1e3 included
    for name in IDENTIFIER.findall(expr):
        if name not in PROMQL_WORDS:
            found.series.add(name)
    found.series.update(name for name in found.matchers if name != "__name__")
    return found


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))  # rows, collapsed or not


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expression) for every PromQL the dashboard runs."""
    found = []
    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append(
                    (f"panel {panel.get('title')!r} {target.get('refId')}", target["expr"])
                )
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and query:
            found.append((f"variable {variable.get('name')!r}", query))
    return found


def problems(dashboard: dict[str, Any], exported: dict[str, set[str]]) -> list[str]:
    """Every series or label the dashboard names that `exported` (series -> labels) lacks."""
    found = []
    for where, expr in expressions(dashboard):
        asked = uses(expr)
        for name in sorted(asked.series - exported.keys()):
            found.append(f"{where}: {name} is not a series Baton exports ({expr})")
        known = [exported[name] for name in asked.series if name in exported]
        for name, labels in asked.matchers.items():
            have = exported.get(name, set()) if name != "__name__" else set()
            for label in sorted(labels - have - TARGET_LABELS - {"__name__"}):
                found.append(f"{where}: {name} has no label {label!r} ({expr})")
        for label in sorted(asked.grouping - TARGET_LABELS):
            if not known or any(label not in labels for labels in known):
                found.append(f"{where}: grouping by {label!r}, absent from a series ({expr})")
        if not asked.series:
            found.append(f"{where}: names no series ({expr})")
    return found


def exported_series(text: str) -> dict[str, set[str]]:
    """Series name -> label names, from the `# TYPE` lines and the samples of an exposition."""
    series: dict[str, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["#", "TYPE"]:
            name, kind = parts[2], parts[3]
            if kind == "counter":
                series.setdefault(name if name.endswith("_total") else f"{name}_total", set())
            elif kind == "histogram":
                for suffix in ("_bucket", "_sum", "_count"):
                    series.setdefault(name + suffix, set())
                series[f"{name}_bucket"].add("le")
            else:
                series.setdefault(name, set())
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in series:
                series[sample.name].update(sample.labels)
    return series


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Baton's series and their labels, with every labelled family holding a sample."""
    with running_app(tmp_path_factory.mktemp("db"), metrics_token=METRICS_TOKEN) as (
        http,
        store,
        clock,
    ):
        metrics: Metrics = http.app.state.metrics  # type: ignore[attr-defined]
        assert http.get("/.well-known/oauth-authorization-server").status_code == 200
        # Families whose labels no quick request fills in: moved through their own methods.
        metrics.revoked(FeedEntryKind.GRANT, RevocationCause.REVOKED)
        metrics.webhook_deliveries.labels(outcome="delivered").inc()
        # The per-client signal series (issue 28): one client's stale uses and a refusal.
        now = clock.now()
        kinds = ((SignalKind.STALE_ACCESS, None), (SignalKind.WOULD_REFUSE, Refusal.LEEWAY))
        counts = [
            SignalCount("cl_x", kind, reason, Source.RESOURCE, "g", now, now, 1, {90: 1})
            for kind, reason in kinds
        ]
        anyio.run(store.record_signals, counts)
        response = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert response.status_code == 200
        return exported_series(response.text)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_the_dashboard_is_importable_with_a_prometheus_input(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] == "Baton"
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert {"job", "instance"} <= set(names)
    ids = [p["id"] for p in panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert panel["targets"], panel["title"]


def test_every_series_and_label_the_dashboard_names_is_exported(
    dashboard: dict[str, Any], exposition: dict[str, set[str]]
) -> None:
    assert len(expressions(dashboard)) > 10
    assert problems(dashboard, exposition) == []


def test_the_dashboard_covers_every_series_baton_exports(
    dashboard: dict[str, Any], exposition: dict[str, set[str]]
) -> None:
    """A new series without a panel is worth noticing; histograms count once."""
    named: set[str] = set()
    for _, expr in expressions(dashboard):
        named |= uses(expr).series
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in exposition}
    shown = {re.sub(r"_(bucket|sum|count)$", "", name) for name in named}
    assert families - shown == set()


def test_a_bogus_series_or_label_is_caught(
    dashboard: dict[str, Any], exposition: dict[str, set[str]]
) -> None:
    bogus = copy.deepcopy(dashboard)
    panel = next(p for p in panels(bogus["panels"]) if p.get("targets"))
    panel["targets"][0]["expr"] = "sum by (route) (rate(baton_logins_failed_total[5m]))"
    assert any(
        "baton_logins_failed_total is not a series" in p for p in problems(bogus, exposition)
    )

    bogus = copy.deepcopy(dashboard)
    panel = next(p for p in panels(bogus["panels"]) if p.get("targets"))
    panel["targets"][0]["expr"] = 'sum by (tenant) (rate(baton_http_requests_total{x="1"}[5m]))'
    found = problems(bogus, exposition)
    assert any("grouping by 'tenant'" in p for p in found)
    assert any("has no label 'x'" in p for p in found)

    bogus = copy.deepcopy(dashboard)
    bogus["templating"]["list"][0]["query"]["query"] = "label_values(baton_nope, job)"
    assert any("baton_nope is not a series" in p for p in problems(bogus, exposition))


@pytest.mark.parametrize(
    ("expr", "series", "grouping"),
    [
        (
            "histogram_quantile(0.99, sum by (le, route) "
            '(rate(baton_http_request_duration_seconds_bucket{job=~"$job"}[$__rate_interval])))',
            {"baton_http_request_duration_seconds_bucket"},
            {"le", "route"},
        ),
        (
            "sum(rate(a_total[5m])) / sum without (x) (b)",
            {"a_total", "b"},
            {"x"},
        ),
        ("label_values(baton_active_grants, instance)", {"baton_active_grants"}, {"instance"}),
        ("1e3 * max(c:recorded)", {"c:recorded"}, set()),
    ],
)  # fmt: skip
def test_the_tokenizer_finds_series_and_grouping_labels(
    expr: str, series: set[str], grouping: set[str]
) -> None:
    found = uses(expr)
    assert (found.series, found.grouping) == (series, grouping)
