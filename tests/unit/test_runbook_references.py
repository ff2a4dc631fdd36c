"""Every name a runbook command uses exists in the project: metrics, log events, settings, keys.

The commands themselves run against a live node in tests/integration/test_runbook_commands.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from ntplatform import keys
from producer.metrics import ProducerMetrics

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = sorted((ROOT / "docs" / "runbooks").glob("*.md"))
SOURCES = [p for d in ("ntplatform", "producer") for p in (ROOT / d).rglob("*.py")]


def _commands() -> list[str]:
    lines = []
    for path in RUNBOOKS:
        inside = False
        for line in path.read_text().splitlines():
            if line.startswith("```"):
                inside = line.strip() in ("```bash", "```sh", "```shell")
                continue
            if inside and line.strip() and not line.lstrip().startswith("#"):
                lines.append(line)
    return lines


def _expand(pattern: str) -> list[str]:
    """``market_data_(stale|recovered)`` -> both names."""
    match = re.search(r"\(([a-z_|]+)\)", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [name for option in match.group(1).split("|") for name in _expand(head + option + tail)]


def _exported_metric_names() -> set[str]:
    metrics = ProducerMetrics()
    for label_names, metric in [
        (("X",), metrics.report_publish),
        (("X",), metrics.lease_conflicts),
        (("fast",), metrics.calc_latency_ms),
        (("X",), metrics.data_age_ms),
        (("n",), metrics.node_heartbeat),
        (("n",), metrics.symbols_assigned),
    ]:
        metric.labels(*label_names)
    text = generate_latest(metrics.registry).decode()
    return set(re.findall(r"^# TYPE (\w+)", text, re.MULTILINE)) | set(
        re.findall(r"^(\w+)[{ ]", text, re.MULTILINE)
    )


def _logged_events() -> set[str]:
    code = "\n".join(p.read_text() for p in SOURCES)
    return set(re.findall(r'(?:\.(?:debug|info|warning|error)|emit)\(\s*"([a-z_]+)"', code))


COMMANDS = _commands()


def test_runbooks_have_commands():
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("command", COMMANDS)
def test_runbook_command_names_only_real_metrics_events_settings_and_keys(command):
    exported = _exported_metric_names()
    for name in re.findall(r"\b(nt_[a-z_]+)", command):
        base = name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        # grep prefixes like ^nt_calc_latency_ms_ must name a real metric family.
        assert any(m.startswith(base.rstrip("_")) for m in exported), f"no metric {name}"
    events = _logged_events()
    for pattern in re.findall(r'"event":"([a-z_()|]+)"', command):
        for event in _expand(pattern):
            assert event in events, f"no log event {event!r} in the code"
    settings_source = (ROOT / "ntplatform" / "settings.py").read_text()
    for setting in re.findall(r"\b(NT_[A-Z_]+)\b", command):
        assert f'"{setting}"' in settings_source, f"no setting {setting}"
    for key in re.findall(r"\b(report:(?:writer:(?:token:)?|stream:)?|nt:node:)[A-Z*$]", command):
        assert key in {
            keys.report_key(""),
            keys.stream_key(""),
            keys.writer_key(""),
            keys.token_key(""),
            keys.node_key(""),
        }, f"no key family {key}"
