"""Loading and validating recordings (ntplatform.replay.recording)."""

from __future__ import annotations

import orjson
import pytest

from ntplatform.errors import RecordingError
from ntplatform.replay.recording import (
    BOOK_TICKER,
    DEPTH,
    SPOT,
    TRADE,
    USDM,
    load_recording,
    load_recordings,
    recording_files,
)
from tests.conftest import SHARED_DATA

SNAPSHOT_NS = 1_700_000_000_000_000_000


def test_load_recording_spot_starts_timeline_at_snapshot(write_recording, spot_lines):
    recording = load_recording(write_recording(spot_lines))

    assert recording.symbol == "BTCUSDT"
    assert recording.market == SPOT
    assert recording.snapshot["lastUpdateId"] == 103
    assert recording.snapshot_receive_ns == SNAPSHOT_NS
    channels = [message.channel for message in recording.messages]
    assert channels == [DEPTH, BOOK_TICKER, TRADE, DEPTH, BOOK_TICKER, DEPTH, TRADE]
    first = orjson.loads(recording.messages[0].body)["data"]
    assert (first["U"], first["u"]) == (101, 105)  # buffered event the snapshot does not cover
    assert recording.messages[0].receive_ns == SNAPSHOT_NS  # goes out with the snapshot
    assert recording.update_id_range == (101, 110)
    assert recording.trade_id_range == (7, 8)


def test_load_recording_futures_depth_detected_as_usdm(write_recording, usdm_lines):
    recording = load_recording(write_recording(usdm_lines))

    assert recording.market == USDM
    assert recording.update_id_range == (80, 120)
    assert recording.channels == frozenset({DEPTH, BOOK_TICKER, TRADE})


def test_load_recording_plain_text_file_names_file_and_line(tmp_path):
    path = tmp_path / "plain.gz"
    path.write_text("1 {}\n")

    with pytest.raises(RecordingError) as caught:
        load_recording(path)

    assert caught.value.path == str(path)
    assert caught.value.line == 1
    assert "gzip" in caught.value.reason


def test_load_recording_truncated_gzip_names_file(tmp_path, write_recording, spot_lines):
    whole = write_recording(spot_lines * 50, "whole.gz")
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole.read_bytes()[:-40])

    with pytest.raises(RecordingError) as caught:
        load_recording(cut)

    assert caught.value.path == str(cut)
    assert caught.value.line is not None


def test_load_recording_bad_json_on_line_5_names_line_5(write_recording, spot_lines):
    lines = [b"%d %s\n" % (t, orjson.dumps(m)) for t, m in spot_lines]
    lines[4] = b'1700000000010000000 {"stream": "btcusdt@trade", "data": {\n'
    path = write_recording(lines)

    with pytest.raises(RecordingError) as caught:
        load_recording(path)

    assert (caught.value.path, caught.value.line) == (str(path), 5)
    assert "bad JSON" in caught.value.reason
    assert f"{path}:5" in str(caught.value)


def test_load_recording_bad_timestamp_names_line(write_recording, spot_lines):
    lines = [b"%d %s\n" % (t, orjson.dumps(m)) for t, m in spot_lines]
    lines[1] = b"17e9 " + lines[1].partition(b" ")[2]

    with pytest.raises(RecordingError) as caught:
        load_recording(write_recording(lines))

    assert caught.value.line == 2
    assert "timestamp" in caught.value.reason


def test_load_recording_missing_field_names_field_and_line(write_recording, spot_lines):
    lines = spot_lines
    del lines[6][1]["data"]["u"]

    with pytest.raises(RecordingError) as caught:
        load_recording(write_recording(lines))

    assert caught.value.line == 7
    assert "'u'" in caught.value.reason


def test_load_recording_without_snapshot_is_rejected(write_recording, spot_lines):
    lines = [line for line in spot_lines if "lastUpdateId" not in line[1]]

    with pytest.raises(RecordingError, match="no depth snapshot"):
        load_recording(write_recording(lines))


def test_load_recording_sequence_gap_names_line(write_recording, spot_lines):
    lines = spot_lines
    lines[8][1]["data"]["U"] = 112  # previous event ended at u=108

    with pytest.raises(RecordingError) as caught:
        load_recording(write_recording(lines))

    assert caught.value.line == 9
    assert "gap" in caught.value.reason


def test_load_recording_futures_pu_mismatch_is_a_gap(write_recording, usdm_lines):
    lines = usdm_lines
    lines[2][1]["data"]["pu"] = 103

    with pytest.raises(RecordingError, match="gap"):
        load_recording(write_recording(lines))


def test_load_recording_unsupported_stream_is_rejected(write_recording, spot_lines):
    lines = spot_lines
    lines[5][1]["stream"] = "btcusdt@kline_1m"

    with pytest.raises(RecordingError, match="unsupported stream"):
        load_recording(write_recording(lines))


def test_load_recordings_mixed_markets_are_rejected(write_recording, spot_lines, usdm_lines):
    spot = write_recording(spot_lines, "spot.gz")
    usdm = write_recording(usdm_lines, "usdm.gz")

    with pytest.raises(RecordingError, match="one market"):
        load_recordings([spot, usdm])


def test_load_recordings_same_symbol_twice_is_rejected(write_recording, spot_lines):
    first = write_recording(spot_lines, "a.gz")
    second = write_recording(spot_lines, "b.gz")

    with pytest.raises(RecordingError, match="also recorded"):
        load_recordings([first, second])


def test_recording_files_folder_expands_to_sorted_gz(tmp_path, write_recording, spot_lines):
    write_recording(spot_lines, "b.gz")
    write_recording(spot_lines, "a.gz")
    (tmp_path / "notes.txt").write_text("ignored")

    assert recording_files([tmp_path]) == [tmp_path / "a.gz", tmp_path / "b.gz"]


def test_recording_files_missing_path_is_rejected(tmp_path):
    with pytest.raises(RecordingError, match="no such file"):
        recording_files([tmp_path / "absent.gz"])


def test_load_recordings_shared_spot_data_loads():
    recordings = load_recordings([SHARED_DATA / "spot"])

    assert {r.symbol for r in recordings} == {"BTCUSDT", "ETHUSDT"}
    assert all(r.market == SPOT for r in recordings)
