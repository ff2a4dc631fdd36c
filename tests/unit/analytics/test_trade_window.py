"""TradeWindow: hand-worked profiles, expiry, bucket sizing, and a naive re-computation."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ntplatform.analytics import TradeWindow, default_bucket_size, value_area

EMPTY_SUMMARY = {
    "trade_count": 0,
    "volume": 0.0,
    "buy_volume": 0.0,
    "sell_volume": 0.0,
    "vwap": None,
    "poc_price": None,
    "value_area_low": None,
    "value_area_high": None,
}


def test_trade_window_no_trades_returns_empty_summary():
    # Arrange
    window = TradeWindow(window_ms=60_000, bucket_size=1.0)

    # Act
    summary = window.summary(now_ms=1_000)

    # Assert
    assert summary == EMPTY_SUMMARY


def test_trade_window_three_trades_gives_hand_computed_summary():
    # Arrange: a buy, a sell and a trade of unknown side in buckets 100, 101, 102.
    window = TradeWindow(window_ms=60_000, bucket_size=1.0)
    window.add(1_000, 100.0, 1.0, True)
    window.add(1_100, 101.0, 3.0, False)
    window.add(1_200, 102.0, 2.0, None)

    # Act
    summary = window.summary(now_ms=2_000)

    # Assert
    assert summary["trade_count"] == 3
    assert summary["volume"] == 6.0
    assert summary["buy_volume"] == 1.0  # the unknown-side 2.0 is neither buy nor sell
    assert summary["sell_volume"] == 3.0
    assert summary["vwap"] == pytest.approx(607 / 6)  # (100*1 + 101*3 + 102*2) / 6
    assert summary["poc_price"] == 101.0  # bucket 101 holds 3 of 6
    # Target 0.7 * 6 = 4.2. From 101 (3): below 100 has 1, above 102 has 2, so take
    # 102 -> 5 >= 4.2, stop.
    assert summary["value_area_low"] == 101.0
    assert summary["value_area_high"] == 102.0


def test_trade_window_designed_profile_grows_value_area_toward_heavier_side():
    # Arrange: bucket volumes 100..106 = 1, 2, 6, 10, 4, 4, 3 (total 30, target 21).
    window = TradeWindow(window_ms=60_000, bucket_size=1.0)
    for price, qty in zip(range(100, 107), (1, 2, 6, 10, 4, 4, 3), strict=True):
        window.add(0, float(price), float(qty), None)

    # Act
    summary = window.summary(now_ms=0)

    # Assert
    # POC 103 (10). Step 1: 102 (6) beats 104 (4) -> 16. Step 2: 104 (4) beats
    # 101 (2) -> 20. Step 3: 105 (4) beats 101 (2) -> 24 >= 21, stop.
    assert summary["poc_price"] == 103.0
    assert summary["value_area_low"] == 102.0
    assert summary["value_area_high"] == 105.0


def test_value_area_equal_neighbours_takes_both_in_one_step():
    # Arrange: volumes 1, 3, 5, 3, 1 (total 13, target 9.1); start at the 5.
    volumes = [1.0, 3.0, 5.0, 3.0, 1.0]

    # Act
    low, high = value_area(volumes, start=2)

    # Assert: both 3s join together -> 11 >= 9.1.
    assert (low, high) == (1, 3)


def test_value_area_single_bucket_returns_that_bucket():
    # Arrange / Act
    bounds = value_area([4.0], start=0)

    # Assert
    assert bounds == (0, 0)


def test_value_area_poc_at_edge_grows_toward_only_side():
    # Arrange: volumes 5, 1, 1, 1 (total 8, target 5.6); start at the edge.
    # Act
    low, high = value_area([5.0, 1.0, 1.0, 1.0], start=0)

    # Assert: 5 -> 6 >= 5.6 after one step up.
    assert (low, high) == (0, 1)


def test_trade_window_equal_volume_buckets_pick_poc_nearest_vwap():
    # Arrange: 100 x 2, 103 x 2, 104 x 1 -> VWAP (200 + 206 + 104) / 5 = 102.
    window = TradeWindow(window_ms=60_000, bucket_size=1.0)
    window.add(0, 100.0, 2.0, None)
    window.add(0, 103.0, 2.0, None)
    window.add(0, 104.0, 1.0, None)

    # Act
    summary = window.summary(now_ms=0)

    # Assert: 103 is 1 from the VWAP, 100 is 2 away.
    assert summary["vwap"] == 102.0
    assert summary["poc_price"] == 103.0


def test_trade_window_equidistant_tie_picks_lower_price_poc():
    # Arrange: 100 x 2, 102 x 2 -> VWAP 101, both buckets 1 away.
    window = TradeWindow(window_ms=60_000, bucket_size=1.0)
    window.add(0, 102.0, 2.0, None)
    window.add(0, 100.0, 2.0, None)

    # Act
    summary = window.summary(now_ms=0)

    # Assert
    assert summary["poc_price"] == 100.0


def test_trade_window_prices_round_to_nearest_bucket_centre_halves_up():
    # Arrange: 100.4 -> 100, 100.5 and 100.6 -> 101.
    window = TradeWindow(window_ms=60_000, bucket_size=1.0)
    window.add(0, 100.4, 1.0, None)
    window.add(0, 100.5, 1.0, None)
    window.add(0, 100.6, 1.0, None)

    # Act
    summary = window.summary(now_ms=0)

    # Assert: bucket 101 holds 2 of 3.
    assert summary["poc_price"] == 101.0
    assert summary["value_area_low"] == 100.0  # target 2.1 needs the 100 bucket too
    assert summary["value_area_high"] == 101.0


def test_trade_window_expiry_drops_old_trades_and_keeps_boundary_trade():
    # Arrange: window 1 s; trades at 0, 500 and 1500 ms.
    window = TradeWindow(window_ms=1_000, bucket_size=1.0)
    window.add(0, 100.0, 1.0, True)
    window.add(500, 101.0, 2.0, False)
    window.add(1_500, 102.0, 4.0, None)

    # Act: cutoff 1500 - 1000 = 500; the trade at 0 goes, the one at 500 stays.
    summary = window.summary(now_ms=1_500)

    # Assert
    assert summary["trade_count"] == 2
    assert summary["volume"] == 6.0
    assert summary["buy_volume"] == 0.0  # the only buy left
    assert summary["sell_volume"] == 2.0
    assert summary["vwap"] == pytest.approx(610 / 6)  # (101*2 + 102*4) / 6


def test_trade_window_expiry_restores_state_of_window_without_old_trades():
    # Arrange: the same recent trades, with and without older ones in front.
    recent = [(5_000, 101.25, 0.5, True), (5_100, 99.75, 1.25, False), (5_200, 101.5, 2.0, None)]
    older = [(0, 120.0, 7.0, True), (100, 80.0, 3.0, False), (200, 101.25, 4.0, None)]
    with_older = TradeWindow(window_ms=1_000, bucket_size=0.5)
    recent_only = TradeWindow(window_ms=1_000, bucket_size=0.5)
    for trade in older + recent:
        with_older.add(*trade)
    for trade in recent:
        recent_only.add(*trade)

    # Act
    expired = with_older.summary(now_ms=5_500)
    fresh = recent_only.summary(now_ms=5_500)

    # Assert: binary-exact numbers, so the sums come back exactly.
    assert expired == fresh


def test_trade_window_inexact_quantities_expire_within_rounding():
    # Arrange: decimal quantities that binary floats cannot hold exactly.
    window = TradeWindow(window_ms=1_000, bucket_size=0.1)
    window.add(0, 2650.3, 0.3, True)
    for offset, qty in enumerate((0.1, 0.2, 0.7, 0.1)):
        window.add(2_000 + offset, 2650.1, qty, False)

    # Act
    summary = window.summary(now_ms=2_100)

    # Assert
    assert summary["trade_count"] == 4
    assert summary["volume"] == pytest.approx(1.1)
    assert summary["buy_volume"] == 0.0  # reset exactly when the last buy leaves
    assert summary["sell_volume"] == pytest.approx(1.1)
    assert summary["vwap"] == pytest.approx(2650.1)
    assert summary["poc_price"] == 2650.1
    assert summary["value_area_low"] == summary["value_area_high"] == 2650.1


def test_trade_window_all_trades_expired_returns_empty_summary():
    # Arrange
    window = TradeWindow(window_ms=1_000, bucket_size=1.0)
    window.add(0, 100.0, 0.1, True)
    window.add(10, 101.0, 0.2, False)

    # Act
    summary = window.summary(now_ms=5_000)

    # Assert
    assert summary == EMPTY_SUMMARY
    assert len(window) == 0


@pytest.mark.parametrize(
    ("price", "size"),
    [
        (61_837.0, 1.0),  # one basis point 6.18
        (2_650.0, 0.1),  # 0.265
        (100.0, 0.01),  # exactly 0.01
        (10_000.0, 1.0),  # exactly 1.0
        (9_999.99, 0.1),  # just under 1.0
        (0.5, 1e-5),  # 0.00005
    ],
)
def test_default_bucket_size_price_gives_power_of_ten_below_one_basis_point(price, size):
    # Arrange / Act
    chosen = default_bucket_size(price)

    # Assert
    assert chosen == size


def test_default_bucket_size_non_positive_price_raises():
    # Arrange / Act / Assert
    with pytest.raises(ValueError, match="positive finite price"):
        default_bucket_size(0.0)


def test_trade_window_without_size_fixes_it_from_first_trade():
    # Arrange
    window = TradeWindow(window_ms=60_000)
    before = window.bucket_size

    # Act
    window.add(0, 2_650.13, 1.0, True)
    window.add(1, 61_837.0, 0.001, True)  # a later, very different price changes nothing

    # Assert
    assert before is None
    assert window.bucket_size == 0.1
    assert window.summary(now_ms=1)["poc_price"] == 2650.1  # exact, not 2650.1000000000004


@pytest.mark.parametrize(
    ("price", "qty"),
    [(100.0, 0.0), (100.0, -1.0), (0.0, 1.0), (math.nan, 1.0), (100.0, math.inf)],
)
def test_trade_window_unusable_trade_is_ignored(price, qty):
    # Arrange
    window = TradeWindow(window_ms=60_000, bucket_size=1.0)

    # Act
    window.add(0, price, qty, True)

    # Assert
    assert window.summary(now_ms=0) == EMPTY_SUMMARY


@pytest.mark.parametrize(
    ("window_ms", "bucket_size", "message"),
    [(0, None, "window_ms"), (1_000, 0.0, "bucket_size"), (1_000, math.nan, "bucket_size")],
)
def test_trade_window_invalid_arguments_raise(window_ms, bucket_size, message):
    # Arrange / Act / Assert
    with pytest.raises(ValueError, match=message):
        TradeWindow(window_ms=window_ms, bucket_size=bucket_size)


# A from-scratch implementation of the same definitions, for the property tests.


def naive_summary(trades, now_ms, window_ms, bucket_size):
    kept = [trade for trade in trades if trade[0] >= now_ms - window_ms]
    if not kept:
        return dict(EMPTY_SUMMARY)
    volume = math.fsum(qty for _, _, qty, _ in kept)
    vwap = math.fsum(price * qty for _, price, qty, _ in kept) / volume
    buckets = defaultdict(float)
    for _, price, qty, _ in kept:
        buckets[math.floor(price / bucket_size + 0.5) * bucket_size] += qty
    centres = sorted(buckets)
    poc = min(centres, key=lambda centre: (-buckets[centre], abs(centre - vwap), centre))
    low = high = centres.index(poc)
    area, target = buckets[poc], 0.7 * sum(buckets.values())
    while area < target:
        below = buckets[centres[low - 1]] if low > 0 else None
        above = buckets[centres[high + 1]] if high + 1 < len(centres) else None
        take_above = below is None or (above is not None and above >= below)
        take_below = above is None or (below is not None and below >= above)
        if take_above:
            high += 1
            area += above
        if take_below:
            low -= 1
            area += below
    return {
        "trade_count": len(kept),
        "volume": volume,
        "buy_volume": math.fsum(qty for _, _, qty, side in kept if side is True),
        "sell_volume": math.fsum(qty for _, _, qty, side in kept if side is False),
        "vwap": vwap,
        "poc_price": poc,
        "value_area_low": centres[low],
        "value_area_high": centres[high],
    }


def trade_steps(prices, quantities):
    """Steps ("add" | "summary", time advance, price, qty, side) in time order."""
    return st.lists(
        st.tuples(
            st.sampled_from(["add", "add", "add", "summary"]),
            st.integers(min_value=0, max_value=400),
            prices,
            quantities,
            st.sampled_from([True, False, None]),
        ),
        max_size=80,
    )


# Prices on a 0.25 grid and quantities in eighths are binary-exact, and so are
# their products and sums: the incremental and the naive summary must agree exactly.
exact_prices = st.integers(min_value=400, max_value=440).map(lambda tick: tick * 0.25)
exact_quantities = st.integers(min_value=1, max_value=80).map(lambda eighths: eighths / 8)


@given(steps=trade_steps(exact_prices, exact_quantities))
def test_trade_window_exact_trades_summary_equals_naive_recomputation(steps):
    # Arrange
    window = TradeWindow(window_ms=1_000, bucket_size=0.5)
    trades, now_ms = [], 0
    for action, advance, price, qty, side in steps:
        now_ms += advance
        if action == "add":
            window.add(now_ms, price, qty, side)
            trades.append((now_ms, price, qty, side))
            continue

        # Act
        summary = window.summary(now_ms)

        # Assert
        assert summary == naive_summary(trades, now_ms, 1_000, 0.5)


inexact_prices = st.floats(min_value=90.0, max_value=110.0)
inexact_quantities = st.floats(min_value=1e-4, max_value=50.0)


@given(steps=trade_steps(inexact_prices, inexact_quantities))
def test_trade_window_inexact_trades_totals_match_naive_within_rounding(steps):
    # Arrange
    window = TradeWindow(window_ms=1_000, bucket_size=0.5)
    trades, now_ms = [], 0
    for action, advance, price, qty, side in steps:
        now_ms += advance
        if action == "add":
            window.add(now_ms, price, qty, side)
            trades.append((now_ms, price, qty, side))
            continue

        # Act
        summary = window.summary(now_ms)

        # Assert
        expected = naive_summary(trades, now_ms, 1_000, 0.5)
        assert summary["trade_count"] == expected["trade_count"]
        assert (summary["vwap"] is None) == (expected["vwap"] is None)
        for key in ("volume", "buy_volume", "sell_volume", "vwap"):
            if expected[key] is not None:
                assert summary[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9)
