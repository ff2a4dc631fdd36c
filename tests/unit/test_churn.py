"""Churn findings from counter growth, worked by hand against the alert thresholds."""

from __future__ import annotations

import pytest

from ntplatform.churn import counter_increase, excessive_rebalancing, resubscribe_loop


@pytest.mark.parametrize(
    ("previous", "current", "grown"),
    [
        (None, 7.0, 0.0),  # first sight of the counter: no growth known yet
        (3.0, 8.0, 5.0),
        (8.0, 8.0, 0.0),
        (10.0, 2.0, 2.0),  # dropped: the process restarted and counted 2 since
    ],
)
def test_counter_increase(previous: float | None, current: float, grown: float) -> None:
    assert counter_increase(previous, current) == grown


def test_rebalancing_at_the_threshold_is_quiet_above_it_a_finding() -> None:
    # 3 changes in 60 s = 0.05/s: the alert fires only above 0.05/s.
    assert excessive_rebalancing({"node-a": 3.0, "node-b": 1.0}, 60.0, []) is None
    finding = excessive_rebalancing({"node-a": 4.0, "node-b": 1.0}, 60.0, [])
    assert finding is not None
    assert finding.kind == "excessive_rebalancing"
    assert finding.data["rate_per_s"] == {"node-a": round(4 / 60, 4), "node-b": round(1 / 60, 4)}
    assert "no node restarted" in finding.detail
    assert "NT_REBALANCE_INTERVAL_SEC" in finding.remediation


def test_rebalancing_names_the_flapping_node() -> None:
    finding = excessive_rebalancing({"node-a": 6.0}, 60.0, ["node-c"])
    assert finding is not None
    assert "node flapping: node-c restarted meanwhile" in finding.detail
    assert finding.data["restarted"] == ["node-c"]


def test_rebalancing_without_nodes_or_time_is_quiet() -> None:
    assert excessive_rebalancing({}, 60.0, []) is None
    assert excessive_rebalancing({"node-a": 50.0}, 0.0, []) is None


def test_resubscribe_loop_ignores_the_platforms_own_resubscriptions() -> None:
    # 120 symbol_acquired (rebalancing) and 30 control_command are expected; 6 reconnects
    # in 60 s is exactly 0.1/s, the threshold, so not a loop yet.
    counts = {"symbol_acquired": 120.0, "control_command": 30.0, "reconnect": 6.0}
    assert resubscribe_loop("node-a", counts, 60.0) is None


def test_resubscribe_loop_sums_the_unexpected_reasons() -> None:
    finding = resubscribe_loop("node-a", {"reconnect": 4.0, "resync": 3.0, "symbol_acquired": 9.0}, 60.0)
    assert finding is not None
    assert finding.node == "node-a"
    assert finding.data["rate_per_s"] == round(7 / 60, 4)
    assert finding.detail.endswith("reconnect=4, resync=3")
    assert finding.guide.startswith("7. WebSocket Reconnection Loops; ")


def test_resubscribe_loop_without_time_is_quiet() -> None:
    assert resubscribe_loop("node-a", {"reconnect": 100.0}, 0.0) is None
