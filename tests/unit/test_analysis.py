"""Archive analyses on a hand-worked hour (ntplatform.analysis)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ntplatform.analysis import Gap, find_gaps, percentile, summarize_hour

HOUR = 1_764_770_400_000  # 2025-12-03 14:00 UTC


def _row(offset_ms: int, node: str, token: int, age: int, spread: float, imb5: float) -> dict:
    return {
        "ts_stream_ms": datetime.fromtimestamp((HOUR + offset_ms) / 1000, UTC),
        "stream_id": f"{HOUR + offset_ms}-0",
        "node_id": node,
        "fencing_token": token,
        "data_age_ms": age,
        "spread_bps": spread,
        "imbalance_1": imb5 / 2,
        "imbalance_5": imb5,
    }


ROWS = [
    _row(1000, "n1", 3, 10, 1.0, 0.1),
    _row(1250, "n1", 3, 20, 2.0, -0.3),
    _row(1500, "n1", 3, 30, 3.0, 0.2),
    _row(5000, "n2", 4, 40, 4.0, 0.5),  # 3.5 s after the previous one: a gap; n2 took over
    _row(5250, "n2", 4, 1000, 5.0, 0.0),
]


def test_hand_worked_hour():
    summary = summarize_hour("BTCUSDT", list(reversed(ROWS)), HOUR)  # order of rows does not matter
    assert summary.reports == 5
    assert summary.publish_rate_per_s == pytest.approx(5 / 3600)
    assert summary.active_rate_per_s == pytest.approx(4 / 4.25)  # 4 intervals in 4.25 s
    # Nearest rank on [10, 20, 30, 40, 1000]: p50 = 3rd value, p95 and p99 = 5th.
    assert (summary.data_age_p50_ms, summary.data_age_p95_ms, summary.data_age_p99_ms) == (30, 1000, 1000)
    assert summary.data_age_max_ms == 1000
    # Gaps over 2 s: 1.5 s -> 5.0 s, and 5.25 s -> the end of the hour; 0 -> 1 s is not one.
    assert summary.gaps == 2
    assert summary.longest_gap_ms == 3_600_000 - 5250
    assert summary.gap_total_ms == 3500 + 3_600_000 - 5250
    assert summary.writer_changes == 1
    assert summary.writers == "n1,n2"
    assert summary.token_regressions == 0
    assert (summary.spread_bps_mean, summary.spread_bps_median, summary.spread_bps_p95) == (3.0, 3.0, 5.0)
    assert summary.imbalance_5_mean == pytest.approx(0.1)
    assert (summary.imbalance_5_min, summary.imbalance_5_max) == (-0.3, 0.5)
    assert summary.imbalance_1_mean == pytest.approx(0.05)


def test_an_hour_analysed_while_open_counts_no_gap_after_now():
    # Analysed 6 s into the hour: only 1.5 s -> 5.0 s is a gap; 5.25 s -> 6 s is too short.
    summary = summarize_hour("BTCUSDT", ROWS, HOUR, end_ms=HOUR + 6000)
    assert (summary.gaps, summary.longest_gap_ms, summary.gap_total_ms) == (1, 3500, 3500)
    # 10 s in: 5.25 s -> 10 s is a gap of 4.75 s.
    later = summarize_hour("BTCUSDT", ROWS, HOUR, end_ms=HOUR + 10_000)
    assert (later.gaps, later.longest_gap_ms, later.gap_total_ms) == (2, 4750, 3500 + 4750)
    # A "now" past the hour is the hour's end.
    closed = summarize_hour("BTCUSDT", ROWS, HOUR, end_ms=HOUR + 2 * 3_600_000)
    assert closed.longest_gap_ms == 3_600_000 - 5250


def test_a_lower_token_after_a_higher_one_is_a_regression_and_a_writer_change():
    rows = [*ROWS, _row(6000, "n1", 3, 10, 1.0, 0.0)]
    summary = summarize_hour("BTCUSDT", rows, HOUR)
    assert summary.token_regressions == 1
    assert summary.writer_changes == 2


def test_an_empty_hour_is_one_gap_and_no_numbers():
    summary = summarize_hour("ETHUSDT", [], HOUR)
    assert (summary.reports, summary.gaps, summary.longest_gap_ms) == (0, 1, 3_600_000)
    assert summary.data_age_p95_ms is None
    assert summary.active_rate_per_s is None


def test_gaps_without_the_hour_edges():
    assert find_gaps([0, 100, 2200, 2300], 0, 10_000, gap_ms=2000, edges=False) == [Gap(100, 2200)]
    assert find_gaps([0, 100, 2100], 0, 10_000, gap_ms=2000, edges=False) == []  # exactly 2 s is no gap


def test_percentile_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    assert percentile(list(range(1, 101)), 95) == 95.0
    assert percentile(list(range(1, 101)), 95.5) == 96.0


@pytest.mark.parametrize("gap_ms", [0, -5])
def test_a_gap_threshold_that_is_not_above_zero_is_refused(gap_ms: int) -> None:
    with pytest.raises(ValueError, match=rf"gap_ms {gap_ms}: must be above 0"):
        find_gaps([0, 100], 0, 10_000, gap_ms=gap_ms)
