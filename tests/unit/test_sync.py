import pytest

from ntplatform.sync import DepthSequencer, Verdict


def test_spot_sequence_after_snapshot_applies_contiguous_events():
    seq = DepthSequencer(futures=False)
    seq.on_snapshot(100)
    # Binance rule: drop u <= 100; first kept event must have U <= 101 <= u.
    assert seq.check(90, 100, None) is Verdict.STALE
    assert seq.check(95, 104, None) is Verdict.APPLY
    assert seq.check(105, 110, None) is Verdict.APPLY
    assert seq.last_update_id == 110


def test_spot_sequence_missing_ids_reports_gap_and_keeps_position():
    seq = DepthSequencer(futures=False)
    seq.on_snapshot(100)
    seq.check(101, 103, None)
    assert seq.check(105, 107, None) is Verdict.GAP  # 104 missing
    assert seq.last_update_id == 103


def test_spot_first_event_after_stale_snapshot_reports_gap():
    seq = DepthSequencer(futures=False)
    seq.on_snapshot(100)
    # The buffered stream starts at 150: ids 101..149 were never seen.
    assert seq.check(150, 160, None) is Verdict.GAP


def test_futures_sequence_uses_previous_final_id():
    seq = DepthSequencer(futures=True)
    seq.on_snapshot(1000)
    assert seq.check(990, 1000, 980) is Verdict.STALE
    assert seq.check(995, 1007, 1000) is Verdict.APPLY  # straddles the snapshot
    assert seq.check(1010, 1020, 1007) is Verdict.APPLY  # ids need not be contiguous
    assert seq.check(1030, 1040, 1025) is Verdict.GAP  # pu must equal previous u


def test_futures_first_event_straddling_without_pu_match_applies():
    seq = DepthSequencer(futures=True)
    seq.on_snapshot(1000)
    assert seq.check(999, 1003, 990) is Verdict.APPLY


def test_futures_first_event_after_stale_snapshot_reports_gap():
    seq = DepthSequencer(futures=True)
    seq.on_snapshot(1000)
    assert seq.check(1100, 1110, 1090) is Verdict.GAP


def test_check_before_snapshot_raises():
    seq = DepthSequencer(futures=False)
    assert not seq.synced
    with pytest.raises(RuntimeError, match="before on_snapshot"):
        seq.check(1, 2, None)


def test_reset_forgets_position():
    seq = DepthSequencer(futures=False)
    seq.on_snapshot(5)
    seq.reset()
    assert not seq.synced


def test_snapshot_older_than_the_book_has_been_is_behind_even_after_reset():
    seq = DepthSequencer(futures=False)
    assert not seq.behind(1)  # nothing seen yet: any snapshot will do
    seq.on_snapshot(100)
    seq.check(101, 110, None)
    seq.reset()  # a resync: the position is forgotten, the high water is not

    assert seq.high_water == 110
    assert seq.behind(105)  # would take the book from 110 back to 105
    assert not seq.behind(110)
    assert not seq.behind(250)


def test_high_water_follows_the_newest_snapshot_or_event_only_upwards():
    seq = DepthSequencer(futures=True)
    seq.on_snapshot(1000)
    seq.check(999, 1003, 990)
    seq.on_snapshot(900)  # an older snapshot anchored anyway does not lower it

    assert seq.high_water == 1003
    assert seq.last_update_id == 900
