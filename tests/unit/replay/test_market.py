"""Pure replay state of one symbol (ntplatform.replay.market)."""

from __future__ import annotations

import pytest

from ntplatform.replay.market import (
    EPOCH_PAUSE_NS,
    ID_GAP,
    SymbolReplay,
    agg_trade_from_trade,
)
from ntplatform.replay.recording import BOOK_TICKER, DEPTH, TRADE, load_recording
from tests.conftest import SHARED_DATA

START_NS = 1_800_000_000_000_000_000  # wall clock at which the replay starts
SNAPSHOT_NS = 1_700_000_000_000_000_000
MS = 1_000_000


@pytest.fixture
def spot_recording(write_recording, spot_lines):
    return load_recording(write_recording(spot_lines))


@pytest.fixture
def usdm_recording(write_recording, usdm_lines):
    return load_recording(write_recording(usdm_lines))


def test_release_before_start_returns_nothing(spot_recording):
    replay = SymbolReplay(spot_recording, start_ns=START_NS)

    assert replay.release(START_NS - 1) == []


def test_release_at_start_sends_buffered_event_after_snapshot(spot_recording):
    replay = SymbolReplay(spot_recording, start_ns=START_NS)

    released = replay.release(START_NS)

    assert [(m.channel, m.data["U"], m.data["u"]) for m in released] == [(DEPTH, 101, 105)]
    assert replay.book.update_id == 105
    assert replay.depth_snapshot(5)["bids"][0] == ["10.00", "1.5"]


def test_release_follows_receive_times_scaled_by_speed(spot_recording):
    replay = SymbolReplay(spot_recording, start_ns=START_NS, speed=2.0)
    replay.release(START_NS)

    early = replay.release(START_NS + 49 * MS)  # recording +98 ms: depth at +100 ms not due
    due = replay.release(START_NS + 50 * MS)

    assert [m.channel for m in early] == [BOOK_TICKER, TRADE]
    assert [m.channel for m in due] == [DEPTH]


def test_release_restamps_event_times_into_wall_clock(spot_recording):
    speed = 4.0
    replay = SymbolReplay(spot_recording, start_ns=START_NS, speed=speed)

    released = replay.release(START_NS + 100 * MS)

    trade = next(m.data for m in released if m.channel == TRADE)
    recorded_event_ms = (SNAPSHOT_NS + 21 * MS) // MS + 1300
    expected = START_NS / MS + (recorded_event_ms - SNAPSHOT_NS / MS) / speed
    assert trade["E"] == round(expected)
    assert trade["E"] - START_NS // MS == round((21 + 1300) / speed)  # skew kept, scaled


def test_depth_snapshot_tracks_released_depth_with_exact_strings(spot_recording):
    replay = SymbolReplay(spot_recording, start_ns=START_NS)

    replay.release(START_NS + 100 * MS)
    snapshot = replay.depth_snapshot(1000)

    assert snapshot == {
        "lastUpdateId": 108,
        "bids": [["9.00", "2.0"]],
        "asks": [["10.50", "3.0"], ["11.00", "1.5"], ["12.00", "1.0"]],
    }
    assert replay.depth_snapshot(1)["asks"] == [["10.50", "3.0"]]


def test_book_matches_every_book_ticker_with_same_update_id(spot_recording):
    replay = SymbolReplay(spot_recording, start_ns=START_NS)
    checked = 0

    for step in range(0, 300, 5):
        for message in replay.release(START_NS + step * MS):
            if message.channel == BOOK_TICKER and message.data["u"] == replay.book.update_id:
                snapshot = replay.depth_snapshot(1)
                assert snapshot["bids"][0] == [message.data["b"], message.data["B"]]
                assert snapshot["asks"][0] == [message.data["a"], message.data["A"]]
                checked += 1

    assert checked == 2


def test_next_epoch_restarts_from_snapshot_with_shifted_ids_and_a_gap(spot_recording):
    replay = SymbolReplay(spot_recording, start_ns=START_NS)
    first_epoch = replay.release(START_NS + 300 * MS)
    epoch_length_ns = 250 * MS + EPOCH_PAUSE_NS

    second_epoch = replay.release(START_NS + epoch_length_ns)

    step = (110 - 101) + ID_GAP
    assert replay.epoch == 1
    assert replay.snapshot_update_id == 103 + step
    assert replay.depth_snapshot(10)["lastUpdateId"] == 105 + step  # after the buffered event
    last_u = max(m.data["u"] for m in first_epoch if m.channel == DEPTH)
    first_new = second_epoch[0].data
    assert first_new["U"] > last_u + 1  # a gap a sequence check sees
    assert first_new["U"] == 101 + step


def test_next_epoch_keeps_trade_ids_and_event_times_increasing(spot_recording):
    replay = SymbolReplay(spot_recording, start_ns=START_NS)
    first_epoch = replay.release(START_NS + 349 * MS)

    second_epoch = replay.release(START_NS + 600 * MS)

    trades = [m.data for m in first_epoch + second_epoch if m.channel == TRADE]
    ids = [trade["t"] for trade in trades]
    times = [trade["E"] for trade in trades]
    assert ids == sorted(ids)
    assert ids[2] - ids[1] > 1  # gap at the boundary
    assert times == sorted(times)


def test_release_after_long_stall_jumps_to_the_current_epoch(spot_recording):
    replay = SymbolReplay(spot_recording, start_ns=START_NS, speed=10.0)

    replay.release(START_NS + 10 * 35 * MS)  # ten epochs of 350 ms at speed 10

    assert replay.epoch == 10


def test_alias_replays_same_recording_under_new_symbol(spot_recording):
    replay = SymbolReplay(spot_recording, start_ns=START_NS, symbol="ADAUSDT")

    released = replay.release(START_NS + 300 * MS)

    assert {m.data["s"] for m in released} == {"ADAUSDT"}


def test_futures_snapshot_carries_event_and_transaction_times(usdm_recording):
    replay = SymbolReplay(usdm_recording, start_ns=START_NS)

    replay.release(START_NS + 60 * MS)
    snapshot = replay.depth_snapshot(1000)

    assert snapshot["lastUpdateId"] == 120
    assert snapshot["E"] > START_NS // MS
    assert snapshot["T"] <= snapshot["E"]
    assert snapshot["asks"][0] == ["10.5", "0.300"]


def test_futures_next_epoch_breaks_pu_chain(usdm_recording):
    replay = SymbolReplay(usdm_recording, start_ns=START_NS)
    old = replay.release(START_NS + 90 * MS)

    new = replay.release(START_NS + 190 * MS)

    last_u = max(m.data["u"] for m in old if m.channel == DEPTH)
    first_depth = next(m.data for m in new if m.channel == DEPTH)
    assert first_depth["pu"] != last_u
    assert first_depth["U"] > last_u


def test_partial_depth_spot_and_futures_shapes(spot_recording, usdm_recording):
    spot = SymbolReplay(spot_recording, start_ns=START_NS)
    futures = SymbolReplay(usdm_recording, start_ns=START_NS)
    spot.release(START_NS + 100 * MS)
    futures.release(START_NS + 60 * MS)

    assert spot.partial_depth(5) == {
        "lastUpdateId": 108,
        "bids": [["9.00", "2.0"]],
        "asks": [["10.50", "3.0"], ["11.00", "1.5"], ["12.00", "1.0"]],
    }
    partial = futures.partial_depth(5)
    assert (partial["e"], partial["U"], partial["u"], partial["pu"]) == (
        "depthUpdate",
        105,
        120,
        104,
    )


def test_agg_trade_from_trade_uses_trade_id_for_all_ids():
    trade = {"e": "trade", "E": 5, "s": "X", "t": 9, "p": "1", "q": "2", "T": 4, "m": False}

    aggregate = agg_trade_from_trade(trade, "usdm")

    assert (aggregate["a"], aggregate["f"], aggregate["l"]) == (9, 9, 9)
    assert "M" not in aggregate


def test_speed_must_be_positive(spot_recording):
    with pytest.raises(ValueError, match="speed"):
        SymbolReplay(spot_recording, start_ns=START_NS, speed=0)


def test_real_spot_recording_book_agrees_with_every_book_ticker_oracle():
    recording = load_recording(SHARED_DATA / "spot" / "btcusdt_20240808.gz")
    replay = SymbolReplay(recording, start_ns=START_NS, speed=1.0)
    pending: dict[int, dict] = {}
    checked = 0
    end_ns = START_NS + replay.epoch_length_ns - EPOCH_PAUSE_NS

    for now in range(START_NS, end_ns + 1, 20 * MS):
        for message in replay.release(now):
            if message.channel == BOOK_TICKER:
                pending[message.data["u"]] = message.data
            elif message.channel == DEPTH and message.data["u"] == replay.book.update_id:
                # the batch's last depth event: the book is at exactly this update id
                ticker = pending.pop(message.data["u"], None)
                if ticker is None:
                    continue
                top = replay.depth_snapshot(1)
                assert top["bids"][0] == [ticker["b"], ticker["B"]]
                assert top["asks"][0] == [ticker["a"], ticker["A"]]
                checked += 1

    assert checked > 500
