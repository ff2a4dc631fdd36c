from ntplatform.tracker import SymbolTracker

MS = 1_000_000


def _synced_tracker() -> SymbolTracker:
    tracker = SymbolTracker("BTCUSDT", book_depth=20, window_ms=60_000)
    tracker.reset_book()
    tracker.set_level(True, 100.0, 2.0)
    tracker.set_level(True, 99.0, 3.0)
    tracker.set_level(False, 101.0, 1.0)
    tracker.set_level(False, 102.0, 4.0)
    tracker.book_applied(500, ts_event_ns=10_000 * MS, ts_receive_ns=9_000 * MS, snapshot=True)
    return tracker


def test_fast_report_before_snapshot_is_none():
    tracker = SymbolTracker("BTCUSDT", book_depth=20, window_ms=60_000)
    tracker.set_level(True, 100.0, 1.0)
    tracker.set_level(False, 101.0, 1.0)
    assert tracker.fast_report(1_000 * MS) is None


def test_fast_report_after_lost_sync_is_none_until_next_snapshot():
    tracker = _synced_tracker()
    tracker.lose_sync()
    assert tracker.fast_report(9_100 * MS) is None
    tracker.reset_book()
    tracker.set_level(True, 100.0, 1.0)
    tracker.book_applied(900, 11_000 * MS, 10_000 * MS, snapshot=True)
    assert tracker.fast_report(10_100 * MS)["book_update_id"] == 900


def test_fast_report_hand_worked_book_values():
    tracker = _synced_tracker()
    report = tracker.fast_report(9_250 * MS)
    assert report["book_update_id"] == 500
    assert report["best_bid"] == 100.0
    assert report["best_ask"] == 101.0
    assert report["mid"] == 100.5
    # microprice = (100 * 1 + 101 * 2) / 3
    assert abs(report["microprice"] - 302 / 3) < 1e-9
    # imbalance_1 = (2 - 1) / 3; imbalance_5 = (5 - 5) / 10
    assert abs(report["imbalance_1"] - 1 / 3) < 1e-12
    assert report["imbalance_5"] == 0.0
    assert report["bid_depth"] == 5.0
    assert report["slow"] is None


def test_data_age_uses_receive_time_so_exchange_clock_skew_cannot_make_it_negative():
    tracker = _synced_tracker()
    # The exchange stamped the event at 10.000 s, 1 s ahead of our receive time 9.000 s.
    report = tracker.fast_report(9_250 * MS)
    assert report["data_age_ms"] == 250
    assert report["ts_event_ms"] == 10_000
    assert report["ts_published_ms"] == 9_250


def test_data_age_never_negative_when_clock_steps_back():
    tracker = _synced_tracker()
    assert tracker.data_age_ms(8_000 * MS) == 0


def test_crossed_book_is_not_reported():
    tracker = _synced_tracker()
    tracker.set_level(True, 101.5, 1.0)
    assert tracker.book.is_crossed()
    assert tracker.fast_report(9_250 * MS) is None


def test_deleting_a_level_with_zero_quantity_moves_the_best_price():
    tracker = _synced_tracker()
    tracker.set_level(False, 101.0, 0.0)
    assert tracker.fast_report(9_250 * MS)["best_ask"] == 102.0


def test_trades_feed_last_trade_and_slow_summary():
    tracker = _synced_tracker()
    tracker.trade(100.0, 2.0, "buyer", 10_000 * MS, 9_000 * MS)
    tracker.trade(102.0, 1.0, "seller", 10_100 * MS, 9_100 * MS)
    slow = tracker.slow_cycle(9_200 * MS)
    report = tracker.fast_report(9_300 * MS)
    assert report["last_trade_price"] == 102.0
    assert report["last_trade_aggressor"] == "seller"
    assert slow["trade_count"] == 2
    assert slow["volume"] == 3.0
    assert slow["buy_volume"] == 2.0
    # vwap = (100 * 2 + 102 * 1) / 3
    assert abs(slow["vwap"] - 302 / 3) < 1e-9
    assert report["slow"] is slow


def test_staleness_changes_once_with_hysteresis():
    tracker = _synced_tracker()  # last event received at 9.000 s
    assert tracker.staleness_change(13_000 * MS) is None  # 4 s old: not yet stale
    assert tracker.staleness_change(14_001 * MS) == "stale"  # > 5 s
    assert tracker.staleness_change(20_000 * MS) is None  # still stale: logged once
    tracker.set_level(True, 100.0, 2.5)
    tracker.book_applied(501, 21_000 * MS, 20_000 * MS, snapshot=False)
    assert tracker.staleness_change(20_500 * MS) == "recovered"  # 0.5 s < 1 s


def test_snapshot_received_before_the_book_lost_sync_does_not_sync_it():
    # The loss is announced at once; a snapshot taken earlier can still be queued behind it.
    tracker = _synced_tracker()
    tracker.lose_sync(at_ns=12_000 * MS)
    tracker.reset_book()
    tracker.set_level(True, 100.0, 1.0)
    tracker.set_level(False, 101.0, 1.0)
    tracker.book_applied(700, 11_500 * MS, 11_900 * MS, snapshot=True)
    assert not tracker.synced
    assert tracker.fast_report(12_100 * MS) is None

    tracker.book_applied(900, 12_400 * MS, 12_500 * MS, snapshot=True)  # taken after the loss
    assert tracker.synced
    assert tracker.fast_report(12_600 * MS)["book_update_id"] == 900
