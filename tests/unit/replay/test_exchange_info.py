"""The replay exchange's instrument catalogue (ntplatform.replay.exchange_info)."""

from __future__ import annotations

import orjson
import pytest

from ntplatform.errors import ConfigError, RecordingError
from ntplatform.replay.exchange_info import (
    build_exchange_info,
    default_http_dir,
    parse_aliases,
    trade_fees,
)

SPOT_ENTRY = {"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"}
FUTURES_ENTRY = {"symbol": "BTCUSDT", "pair": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT"}


@pytest.fixture
def http_dir(tmp_path):
    folder = tmp_path / "http"
    folder.mkdir()
    others = [{"symbol": "ETHUSDT", "baseAsset": "ETH", "quoteAsset": "USDT"}]
    spot = {"timezone": "UTC", "serverTime": 1, "symbols": [SPOT_ENTRY, *others]}
    futures = {"timezone": "UTC", "serverTime": 1, "symbols": [FUTURES_ENTRY, *others]}
    (folder / "spot_exchange_info.json").write_bytes(orjson.dumps(spot))
    (folder / "usdm_exchange_info.json").write_bytes(orjson.dumps(futures))
    return folder


def test_build_exchange_info_lists_only_served_symbols_with_trailing_stop_flag(http_dir):
    info = build_exchange_info(http_dir, "spot", ["BTCUSDT"], {})

    assert [entry["symbol"] for entry in info["symbols"]] == ["BTCUSDT"]
    assert info["symbols"][0]["allowTrailingStop"] is False
    assert info["timezone"] == "UTC"


def test_build_exchange_info_futures_entries_are_unchanged(http_dir):
    info = build_exchange_info(http_dir, "usdm", ["BTCUSDT"], {})

    assert info["symbols"] == [FUTURES_ENTRY]


def test_build_exchange_info_alias_clones_entry_with_new_symbol_and_base(http_dir):
    info = build_exchange_info(http_dir, "usdm", ["BTCUSDT"], {"ADAUSDT": "BTCUSDT"})

    alias = info["symbols"][1]
    assert (alias["symbol"], alias["pair"], alias["baseAsset"]) == ("ADAUSDT", "ADAUSDT", "ADA")
    assert info["symbols"][0]["symbol"] == "BTCUSDT"


@pytest.mark.parametrize(
    ("aliases", "message"),
    [
        ({"ADAUSDT": "XRPUSDT"}, "not a recorded symbol"),
        ({"BTCUSDT": "BTCUSDT"}, "already served"),
        ({"ADABTC": "BTCUSDT"}, "quote asset USDT"),
    ],
)
def test_build_exchange_info_bad_alias_is_a_config_error(http_dir, aliases, message):
    with pytest.raises(ConfigError, match=message):
        build_exchange_info(http_dir, "spot", ["BTCUSDT"], aliases)


def test_build_exchange_info_unknown_recorded_symbol_names_the_file(http_dir):
    with pytest.raises(RecordingError, match="no exchangeInfo entry for SOLUSDT"):
        build_exchange_info(http_dir, "spot", ["SOLUSDT"], {})


def test_build_exchange_info_missing_file_is_a_recording_error(tmp_path):
    with pytest.raises(RecordingError, match="cannot read exchangeInfo"):
        build_exchange_info(tmp_path, "spot", ["BTCUSDT"], {})


def test_parse_aliases_reads_pairs_in_upper_case():
    assert parse_aliases(["adausdt=BTCUSDT", "XRPUSDT=ETHUSDT"]) == {
        "ADAUSDT": "BTCUSDT",
        "XRPUSDT": "ETHUSDT",
    }


@pytest.mark.parametrize("value", ["ADAUSDT", "=BTCUSDT", "ADA USDT=BTCUSDT"])
def test_parse_aliases_malformed_value_is_a_config_error(value):
    with pytest.raises(ConfigError, match="--alias"):
        parse_aliases([value])


def test_default_http_dir_is_beside_the_recordings_folder(tmp_path):
    recordings = tmp_path / "binance" / "spot"
    recordings.mkdir(parents=True)

    assert default_http_dir([recordings]) == tmp_path / "binance" / "http"
    assert default_http_dir([recordings / "x.gz"]) == tmp_path / "binance" / "http"


def test_trade_fees_one_entry_per_symbol():
    assert trade_fees(["BTCUSDT"]) == [
        {"symbol": "BTCUSDT", "makerCommission": "0.001", "takerCommission": "0.001"}
    ]
