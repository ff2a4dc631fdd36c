"""The alert rules, their unit tests, the Prometheus config, the dashboard and the runbooks agree.

``promtool`` (Debian's ``prometheus`` package, installed by ``make setup``) checks and
unit-tests the rules; the rest is read with Python: every alert carries what an operator
needs, every runbook link lands on a heading, and the monitoring guide documents every
metric and every log event the code emits.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from producer.metrics import ProducerMetrics

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "producer" / "config"
RULES = CONFIG / "prometheus-alerts.yml"
RULE_TESTS = CONFIG / "prometheus-alerts.test.yml"
PROMETHEUS_CONFIG = CONFIG / "prometheus.yml"
DASHBOARD = CONFIG / "grafana-dashboard.json"
RUNBOOK = ROOT / "docs" / "runbooks" / "troubleshooting.md"
MONITORING = ROOT / "docs" / "runbooks" / "monitoring.md"
RUNBOOK_URL = "https://github.com/ntplatform/ntplatform/blob/main/docs/runbooks/troubleshooting.md"

SPEC_ALERTS = {
    "MarketDataStale",
    "MarketDataCritical",
    "LeaseConflictSpike",
    "ExcessiveRebalancing",
    "ProducerDown",
    "NoActiveProducers",
    "FastCycleSlowProcessing",
    "SlowCycleSlowProcessing",
    "LowReportPublishRate",
    "ExcessiveWebSocketResubscriptions",
}
# absent() has neither labels nor a meaningful value to show.
NOTHING_TO_SHOW = {"NoActiveProducers"}
# The metric each alert watches; the dashboard must chart each one.
ALERT_SIGNALS = {
    "nt_data_age_ms_bucket",
    "nt_lease_conflicts_total",
    "nt_hrw_rebalances_total",
    "nt_node_heartbeat",
    'up{job="ntplatform-producers"',
    "nt_calc_latency_ms_bucket",
    "nt_report_publish_total",
    "nt_ws_resubscribe_total",
}
# A log call whose first argument is the event name: log.info("event", ...), emit("event", ...).
LOG_CALL = re.compile(r"(?:log\.(?:debug|info|warning|error)|\bemit)\(\s*\"([a-z][a-z0-9_]*)\"")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not installed: run `make setup` (it installs Debian's `prometheus` "
            "package), or `apt-get install prometheus`"
        )
    return found


def run_promtool(*args: str) -> str:
    result = subprocess.run(
        [promtool(), *args], cwd=CONFIG, capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


@cache
def rules() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text())


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rules()["groups"] for rule in group["rules"] if "alert" in rule]


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub gives the headings: lower case, punctuation dropped, spaces to hyphens."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_code or heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_github_anchors_follow_github() -> None:
    text = "# Market data stale\n```\n# not a heading\n```\n## Lease conflicts (LeaseConflictSpike)\n"
    text += "## A\n## A\n"
    assert github_anchors(text) == {"market-data-stale", "lease-conflicts-leaseconflictspike", "a", "a-1"}


# -- promtool ---------------------------------------------------------------------------------


def test_rules_are_valid() -> None:
    output = run_promtool("check", "rules", str(RULES))
    assert "SUCCESS" in output


def test_rule_unit_tests_pass() -> None:
    output = run_promtool("test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in output


def test_prometheus_config_is_valid() -> None:
    output = run_promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert "SUCCESS" in output


def test_prometheus_config_scrapes_the_local_fleet() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["prometheus-alerts.yml"]
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "ntplatform-producers"]
    assert job["scrape_interval"] == "5s"
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert targets == ["127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103"]


# -- alerts -----------------------------------------------------------------------------------


def test_the_spec_alerts_exist_exactly() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert sorted(names) == sorted(SPEC_ALERTS)


@pytest.mark.parametrize("name", sorted(SPEC_ALERTS))
def test_alert_has_severity_summary_description_and_runbook(name: str) -> None:
    [rule] = [rule for rule in alerts() if rule["alert"] == name]
    assert rule["labels"]["severity"] in ("warning", "critical"), rule["labels"]
    annotations = rule["annotations"]
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{name}: no {key}"
    if name not in NOTHING_TO_SHOW:
        assert "{{" in annotations["description"], f"{name}: description shows no label or value"
    assert rule.get("for"), f"{name}: no `for:` duration, so one bad sample would page"


@pytest.mark.parametrize("name", sorted(SPEC_ALERTS))
def test_runbook_url_lands_on_a_heading(name: str) -> None:
    [rule] = [rule for rule in alerts() if rule["alert"] == name]
    url, _, anchor = rule["annotations"]["runbook_url"].partition("#")
    assert url == RUNBOOK_URL
    assert anchor in github_anchors(RUNBOOK.read_text()), f"{name}: no heading for #{anchor} in {RUNBOOK}"


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fired == SPEC_ALERTS, f"never fired: {sorted(SPEC_ALERTS - fired)}"
    assert quiet == SPEC_ALERTS, f"never checked quiet: {sorted(SPEC_ALERTS - quiet)}"


# -- dashboard --------------------------------------------------------------------------------


def dashboard_panels() -> list[dict[str, Any]]:
    return [panel for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["type"] != "row"]


def test_dashboard_uses_the_datasource_input() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["schemaVersion"] >= 36
    for panel in dashboard_panels():
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_dashboard_charts_every_alert_signal() -> None:
    exprs = " ".join(t["expr"] for panel in dashboard_panels() for t in panel["targets"])
    missing = sorted(signal for signal in ALERT_SIGNALS if signal not in exprs)
    assert not missing, f"no dashboard panel for {missing}"


def test_dashboard_runbook_links_land_on_headings() -> None:
    anchors = github_anchors(RUNBOOK.read_text())
    for panel in dashboard_panels():
        for link in panel.get("links", []):
            url, _, anchor = link["url"].partition("#")
            assert url == RUNBOOK_URL, panel["title"]
            assert anchor in anchors, f"{panel['title']}: no heading for #{anchor}"


# -- runbooks -----------------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    names = set()
    for family in ProducerMetrics().registry.collect():
        if family.name.startswith("nt_"):
            names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def test_monitoring_guide_documents_every_metric() -> None:
    names = exported_metric_names()
    assert "nt_report_publish_total" in names
    assert "nt_data_age_ms" in names
    text = MONITORING.read_text()
    missing = sorted(name for name in names if f"`{name}`" not in text and f"`{name}` (" not in text)
    assert not missing, f"{MONITORING} does not describe {missing}"


def emitted_log_events() -> set[str]:
    events = set()
    for package in ("producer", "ntplatform"):
        for source in (ROOT / package).rglob("*.py"):
            events.update(LOG_CALL.findall(source.read_text()))
    return events


def test_monitoring_guide_documents_every_log_event() -> None:
    events = emitted_log_events()
    assert {"lease_conflict", "rebalancing_triggered", "ws_resubscribe", "configuration_loaded"} <= events
    text = MONITORING.read_text()
    missing = sorted(event for event in events if f"| `{event}` |" not in text)
    assert not missing, f"{MONITORING} has no row for the log events {missing}"
