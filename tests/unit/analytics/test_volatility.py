"""Realized volatility: hand examples, a second method, and MidSampler's one-second windows."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ntplatform.analytics import MidSampler, realized_volatility

# ln(1.01): the return of a 1 % rise.
ONE_PERCENT = math.log(1.01)


def test_realized_volatility_up_down_by_e_returns_root_two():
    # Arrange: mids 1, e, 1 -> returns +1, -1; mean 0; variance (1 + 1) / (2 - 1) = 2.
    mids = [1.0, math.e, 1.0]

    # Act
    volatility = realized_volatility(mids)

    # Assert
    assert volatility == pytest.approx(math.sqrt(2.0))


def test_realized_volatility_up_down_up_matches_hand_computation():
    # Arrange: mids 100, 101, 100, 101 -> returns a, -a, a with a = ln(1.01).
    # Mean a/3; deviations 2a/3, -4a/3, 2a/3; squares sum 24a^2/9; / (3 - 1) = 4a^2/3;
    # square root 2a / sqrt(3) = 1.1547005 * 0.0099503 = 0.0114897.
    mids = [100.0, 101.0, 100.0, 101.0]

    # Act
    volatility = realized_volatility(mids)

    # Assert
    assert volatility == pytest.approx(2 * ONE_PERCENT / math.sqrt(3))
    assert volatility == pytest.approx(0.0114897, abs=1e-7)


def test_realized_volatility_constant_mids_returns_zero():
    # Arrange / Act
    volatility = realized_volatility([250.0] * 10)

    # Assert
    assert volatility == 0.0


@pytest.mark.parametrize("mids", [[], [100.0], [100.0, 101.0]])
def test_realized_volatility_fewer_than_two_returns_returns_none(mids):
    # Arrange / Act / Assert
    assert realized_volatility(mids) is None


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_realized_volatility_unusable_mid_returns_none(bad):
    # Arrange / Act / Assert
    assert realized_volatility([100.0, bad, 101.0, 100.0]) is None


positive_mids = st.floats(min_value=1e-3, max_value=1e6)


@given(mids=st.lists(positive_mids, min_size=3, max_size=60))
def test_realized_volatility_any_mids_matches_statistics_stdev(mids):
    # Arrange: the second method, log ratios fed to the standard library.
    returns = [math.log(after / before) for before, after in itertools.pairwise(mids)]
    expected = statistics.stdev(returns)

    # Act
    volatility = realized_volatility(mids)

    # Assert
    assert volatility == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_mid_sampler_several_mids_in_a_second_keeps_the_last():
    # Arrange: second 0 sees 50 then 100; seconds 1 and 2 see 101 and 100.
    sampler = MidSampler(window_ms=60_000)
    for ts_ms, mid in [(0, 50.0), (999, 100.0), (1_250, 101.0), (2_000, 100.0)]:
        sampler.record(ts_ms, mid)

    # Act
    volatility = sampler.realized_vol(now_ms=2_500)

    # Assert: returns ln(101/100) and ln(100/101); the 50 never counts.
    assert len(sampler) == 3
    assert volatility == pytest.approx(realized_volatility([100.0, 101.0, 100.0]))


def test_mid_sampler_missing_second_breaks_the_series():
    # Arrange: seconds 0, 1, then 3, 4 (second 2 has no mid).
    sampler = MidSampler(window_ms=60_000)
    for second, mid in [(0, 100.0), (1, 101.0), (3, 200.0), (4, 202.0)]:
        sampler.record(second * 1_000, mid)

    # Act
    volatility = sampler.realized_vol(now_ms=4_000)

    # Assert: returns 0->1 and 3->4 are both ln(1.01), so the deviation is 0;
    # the ln(200/101) across the gap is not a one-second return and is left out.
    assert volatility == pytest.approx(0.0, abs=1e-15)


def test_mid_sampler_window_keeps_seconds_starting_at_or_after_cutoff():
    # Arrange: window 3 s; seconds 0..5 with a large move early on.
    sampler = MidSampler(window_ms=3_000)
    for second, mid in enumerate([100.0, 200.0, 100.0, 101.0, 100.0, 101.0]):
        sampler.record(second * 1_000, mid)

    # Act: cutoff 5000 - 3000 = 2000 keeps seconds 2..5: 100, 101, 100, 101.
    volatility = sampler.realized_vol(now_ms=5_000)

    # Assert
    assert len(sampler) == 4
    assert volatility == pytest.approx(2 * ONE_PERCENT / math.sqrt(3))


def test_mid_sampler_fewer_than_two_returns_gives_none():
    # Arrange: two seconds, one return.
    sampler = MidSampler(window_ms=60_000)
    sampler.record(0, 100.0)
    sampler.record(1_000, 101.0)

    # Act / Assert
    assert sampler.realized_vol(now_ms=1_000) is None


def test_mid_sampler_window_passed_gives_none_and_no_samples():
    # Arrange
    sampler = MidSampler(window_ms=2_000)
    for second in range(5):
        sampler.record(second * 1_000, 100.0 + second)

    # Act
    volatility = sampler.realized_vol(now_ms=60_000)

    # Assert
    assert volatility is None
    assert len(sampler) == 0


@pytest.mark.parametrize("bad", [None, 0.0, -5.0, math.nan, math.inf])
def test_mid_sampler_unusable_mid_is_ignored(bad):
    # Arrange
    sampler = MidSampler(window_ms=60_000)
    sampler.record(0, 100.0)

    # Act: the bad mid would otherwise replace second 0's sample.
    sampler.record(500, bad)
    sampler.record(1_000, 101.0)
    sampler.record(2_000, 100.0)

    # Assert
    assert sampler.realized_vol(now_ms=2_000) == pytest.approx(realized_volatility([100.0, 101.0, 100.0]))


def test_mid_sampler_earlier_second_than_latest_is_ignored():
    # Arrange
    sampler = MidSampler(window_ms=60_000)
    sampler.record(2_000, 100.0)

    # Act
    sampler.record(1_000, 500.0)

    # Assert
    assert len(sampler) == 1


def test_mid_sampler_non_positive_window_raises():
    # Arrange / Act / Assert
    with pytest.raises(ValueError, match="window_ms"):
        MidSampler(window_ms=0)


any_mid = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


@given(records=st.lists(st.tuples(st.integers(min_value=0, max_value=1_500), any_mid), max_size=80))
def test_mid_sampler_any_input_returns_none_or_finite_non_negative(records):
    # Arrange
    sampler = MidSampler(window_ms=10_000)
    ts_ms = 0
    for advance, mid in records:
        ts_ms += advance
        sampler.record(ts_ms, mid)

    # Act
    volatility = sampler.realized_vol(now_ms=ts_ms)

    # Assert
    assert volatility is None or (math.isfinite(volatility) and volatility >= 0.0)
