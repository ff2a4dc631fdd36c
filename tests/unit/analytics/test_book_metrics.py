"""Book metrics: hand-worked books, missing sides, depth limits, and never-NaN properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ntplatform.analytics import BOOK_METRIC_KEYS, book_metrics

SMALL_BIDS = [(100.0, 2.0), (99.0, 3.0)]
SMALL_ASKS = [(101.0, 1.0), (102.0, 4.0)]

# 25 levels a side: every bid holds 1.0; the best ask 1.0 and every other ask 3.0.
DEEP_BIDS = [(1000.0 - level, 1.0) for level in range(25)]
DEEP_ASKS = [(1001.0 + level, 1.0 if level == 0 else 3.0) for level in range(25)]


def test_book_metrics_two_level_book_matches_hand_computation():
    # Arrange: bids 100 x 2, 99 x 3; asks 101 x 1, 102 x 4.
    # Act
    metrics = book_metrics(SMALL_BIDS, SMALL_ASKS, depth=20)

    # Assert
    assert metrics["best_bid"] == 100.0
    assert metrics["best_ask"] == 101.0
    assert metrics["best_bid_qty"] == 2.0
    assert metrics["best_ask_qty"] == 1.0
    assert metrics["mid"] == 100.5  # (100 + 101) / 2
    assert metrics["spread"] == 1.0  # 101 - 100
    assert metrics["spread_bps"] == pytest.approx(99.50248756)  # 1 / 100.5 * 10_000
    # (100 * ask qty 1 + 101 * bid qty 2) / (2 + 1) = 302 / 3: nearer the thin ask.
    assert metrics["microprice"] == pytest.approx(100.6666667)
    assert metrics["imbalance_1"] == pytest.approx(1 / 3)  # (2 - 1) / (2 + 1)
    assert metrics["imbalance_5"] == 0.0  # (5 - 5) / 10
    assert metrics["imbalance_20"] == 0.0
    assert metrics["bid_depth"] == 5.0  # 2 + 3
    assert metrics["ask_depth"] == 5.0  # 1 + 4


def test_book_metrics_any_book_returns_exactly_the_report_keys():
    # Arrange / Act
    metrics = book_metrics(SMALL_BIDS, SMALL_ASKS, depth=20)

    # Assert
    assert tuple(metrics) == BOOK_METRIC_KEYS


def test_book_metrics_deep_book_uses_five_and_twenty_levels():
    # Arrange: see DEEP_BIDS / DEEP_ASKS.
    # Act
    metrics = book_metrics(DEEP_BIDS, DEEP_ASKS, depth=20)

    # Assert
    assert metrics["imbalance_1"] == 0.0  # (1 - 1) / 2
    assert metrics["imbalance_5"] == pytest.approx(-8 / 18)  # bids 5, asks 1 + 4*3 = 13
    assert metrics["imbalance_20"] == pytest.approx(-38 / 78)  # bids 20, asks 1 + 19*3 = 58
    assert metrics["bid_depth"] == 20.0
    assert metrics["ask_depth"] == 58.0


def test_book_metrics_depth_ten_caps_imbalance_20_and_depth():
    # Arrange: only 10 levels a side count.
    # Act
    metrics = book_metrics(DEEP_BIDS, DEEP_ASKS, depth=10)

    # Assert
    assert metrics["imbalance_5"] == pytest.approx(-8 / 18)  # 5 levels still fit
    assert metrics["imbalance_20"] == pytest.approx(-18 / 38)  # bids 10, asks 1 + 9*3 = 28
    assert metrics["bid_depth"] == 10.0
    assert metrics["ask_depth"] == 28.0


def test_book_metrics_depth_one_uses_best_level_everywhere():
    # Arrange
    # Act
    metrics = book_metrics(SMALL_BIDS, SMALL_ASKS, depth=1)

    # Assert
    assert metrics["imbalance_5"] == pytest.approx(1 / 3)  # (2 - 1) / 3, as at level 1
    assert metrics["imbalance_20"] == pytest.approx(1 / 3)
    assert metrics["bid_depth"] == 2.0
    assert metrics["ask_depth"] == 1.0


def test_book_metrics_depth_above_twenty_keeps_imbalance_20_at_twenty_levels():
    # Arrange / Act
    metrics = book_metrics(DEEP_BIDS, DEEP_ASKS, depth=25)

    # Assert
    assert metrics["imbalance_20"] == pytest.approx(-38 / 78)
    assert metrics["bid_depth"] == 25.0
    assert metrics["ask_depth"] == 73.0  # 1 + 24 * 3


def _assert_nothing_measured(metrics):
    assert metrics["bid_depth"] == 0.0
    assert metrics["ask_depth"] == 0.0
    others = {key: value for key, value in metrics.items() if not key.endswith("_depth")}
    assert all(value is None for value in others.values())


def test_book_metrics_empty_book_returns_none_and_zero_depth():
    # Arrange / Act
    metrics = book_metrics([], [], depth=20)

    # Assert
    _assert_nothing_measured(metrics)


def test_book_metrics_zero_depth_ignores_every_level():
    # Arrange / Act
    metrics = book_metrics(SMALL_BIDS, SMALL_ASKS, depth=0)

    # Assert
    _assert_nothing_measured(metrics)


def test_book_metrics_bids_only_sets_bid_side_and_full_imbalance():
    # Arrange / Act
    metrics = book_metrics(SMALL_BIDS, [], depth=20)

    # Assert
    assert metrics["best_bid"] == 100.0
    assert metrics["best_bid_qty"] == 2.0
    assert metrics["bid_depth"] == 5.0
    assert metrics["best_ask"] is None
    assert metrics["best_ask_qty"] is None
    assert metrics["ask_depth"] == 0.0
    for key in ("mid", "spread", "spread_bps", "microprice"):
        assert metrics[key] is None
    # (bid - 0) / (bid + 0): all the quantity is on the bid side.
    assert metrics["imbalance_1"] == 1.0
    assert metrics["imbalance_5"] == 1.0
    assert metrics["imbalance_20"] == 1.0


def test_book_metrics_asks_only_gives_minus_one_imbalance():
    # Arrange / Act
    metrics = book_metrics([], SMALL_ASKS, depth=20)

    # Assert
    assert metrics["best_ask"] == 101.0
    assert metrics["best_bid"] is None
    assert metrics["mid"] is None
    assert metrics["bid_depth"] == 0.0
    assert metrics["imbalance_1"] == -1.0
    assert metrics["imbalance_20"] == -1.0


def test_book_metrics_zero_quantity_tops_gives_none_microprice_and_imbalance():
    # Arrange: prices on both sides but no size at all.
    bids = [(100.0, 0.0)]
    asks = [(101.0, 0.0)]

    # Act
    metrics = book_metrics(bids, asks, depth=20)

    # Assert
    assert metrics["mid"] == 100.5
    assert metrics["microprice"] is None
    assert metrics["imbalance_1"] is None
    assert metrics["imbalance_20"] is None
    assert metrics["bid_depth"] == 0.0


def test_book_metrics_zero_mid_gives_none_spread_bps():
    # Arrange: a degenerate book whose mid is 0 (bid -1, ask 1).
    # Act
    metrics = book_metrics([(-1.0, 1.0)], [(1.0, 1.0)], depth=20)

    # Assert
    assert metrics["mid"] == 0.0
    assert metrics["spread"] == 2.0
    assert metrics["spread_bps"] is None


prices = st.floats(min_value=1e-6, max_value=1e7, allow_nan=False, allow_infinity=False)
quantities = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
sides = st.lists(st.tuples(prices, quantities), max_size=30)


@given(bids=sides, asks=sides, depth=st.integers(min_value=0, max_value=30))
def test_book_metrics_any_book_returns_finite_values_and_bounded_imbalance(bids, asks, depth):
    # Arrange: arbitrary (even unsorted) levels with non-negative quantities.
    # Act
    metrics = book_metrics(bids, asks, depth)

    # Assert
    assert tuple(metrics) == BOOK_METRIC_KEYS
    for value in metrics.values():
        assert value is None or math.isfinite(value)
    for key in ("imbalance_1", "imbalance_5", "imbalance_20"):
        value = metrics[key]
        assert value is None or -1.0 <= value <= 1.0


@given(bids=sides, asks=sides, depth=st.integers(min_value=1, max_value=30))
def test_book_metrics_any_book_puts_microprice_between_best_prices(bids, asks, depth):
    # Arrange
    # Act
    metrics = book_metrics(bids, asks, depth)

    # Assert
    microprice = metrics["microprice"]
    if microprice is not None:
        low = min(metrics["best_bid"], metrics["best_ask"])
        high = max(metrics["best_bid"], metrics["best_ask"])
        slack = 1e-9 * high
        assert low - slack <= microprice <= high + slack
