"""Which archive runs ``archive_ahead_of_trim_sensor`` asks for (sensors.archive.plan)."""

from __future__ import annotations

from sensors.archive import StreamState, plan

H = 3_600_000
FIRST = 100 * H  # the partitions' first hour
NOW = FIRST + 10 * H + 25 * 60_000  # 25 minutes into hour 10


def _key(hour: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp((FIRST + hour * H) / 1000, UTC).strftime("%Y-%m-%d-%H:00")


def _end(hour: int) -> int:
    return FIRST + (hour + 1) * H


def test_an_hour_archived_while_still_open_is_archived_again_once_closed():
    streams = [StreamState("BTCUSDT", 1000, FIRST + 8 * H + 5, "x-0")]
    archived = {_key(8): _end(8) - 60_000, _key(9): _end(9) + 1}  # 8 a minute before its end
    requests, _ = plan(streams, archived, NOW, maxlen=100_000, first_hour_ms=FIRST)
    assert [(r.partition, r.run_key, r.reason) for r in requests] == [
        (_key(8), f"archive-closed:{_key(8)}", "archived while the hour was open")
    ]


def test_closed_hours_since_the_oldest_entry_that_are_not_archived():
    streams = [
        StreamState("BTCUSDT", 1000, FIRST + 7 * H + 5, "x-0"),
        StreamState("ETHUSDT", 10, FIRST + 9 * H, "y-0"),
        StreamState("EMPTY", 0, None, None),
    ]
    requests, notes = plan(streams, {_key(8): _end(8)}, NOW, maxlen=100_000, first_hour_ms=FIRST)
    assert [(r.partition, r.run_key) for r in requests] == [
        (_key(7), f"archive:{_key(7)}"),
        (_key(9), f"archive:{_key(9)}"),
    ]  # 8 is archived; 10 is still open; nothing before the oldest entry
    assert notes == []


def test_a_nearly_full_stream_archives_its_oldest_hour_now_even_if_open():
    oldest = FIRST + 10 * H + 5 * 60_000  # 20 minutes ago
    streams = [StreamState("BTCUSDT", 85_000, oldest, f"{oldest}-3")]
    requests, notes = plan(streams, {}, NOW, maxlen=100_000, first_hour_ms=FIRST)
    assert [(r.partition, r.run_key) for r in requests] == [
        (_key(10), f"archive-ahead:{_key(10)}:{oldest}-3")
    ]
    assert requests[0].reason == "BTCUSDT stream 85% full"
    assert notes == [
        "report:stream:BTCUSDT holds only 20 min of reports (85000 of ~100000): raise NT_STREAM_MAXLEN"
    ]


def test_below_the_threshold_and_all_archived_nothing_to_do():
    streams = [StreamState("BTCUSDT", 79_999, FIRST + 9 * H, "z-0")]
    assert plan(streams, {_key(9): _end(9) + 5_000}, NOW, maxlen=100_000, first_hour_ms=FIRST) == ([], [])


def test_hours_before_the_first_partition_are_never_asked_for():
    streams = [StreamState("BTCUSDT", 5, FIRST - 3 * H, "old-0")]
    requests, _ = plan(streams, {}, FIRST + H + 1, maxlen=100_000, first_hour_ms=FIRST)
    assert [r.partition for r in requests] == [_key(0)]
