"""The replay exchange's instrument catalogue, built from recorded exchangeInfo responses.

The catalogue lists exactly the symbols the exchange serves: the recorded ones plus
their aliases (an alias clones its source's entry under the new symbol and base asset).
Entries are adjusted to what NautilusTrader 1.221 requires of a current Binance answer.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from ntplatform.errors import ConfigError, RecordingError
from ntplatform.replay.recording import SPOT, USDM

EXCHANGE_INFO_FILES = {SPOT: "spot_exchange_info.json", USDM: "usdm_exchange_info.json"}
SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,20}$")

SPOT_COMMISSION = "0.001"
FUTURES_MAKER_COMMISSION = "0.0002"
FUTURES_TAKER_COMMISSION = "0.0005"


def default_http_dir(paths: Iterable[Path]) -> Path:
    """The ``http`` folder beside the recordings' folder (``.../binance/http``)."""
    first = next(iter(paths))
    folder = first if first.is_dir() else first.parent
    return folder.resolve().parent / "http"


def parse_aliases(values: Iterable[str]) -> dict[str, str]:
    """Parse ``NEWSYM=SRCSYM`` pairs into ``{NEWSYM: SRCSYM}``."""
    aliases: dict[str, str] = {}
    for value in values:
        new, sep, source = value.partition("=")
        new, source = new.strip().upper(), source.strip().upper()
        if not sep or not SYMBOL_PATTERN.match(new) or not SYMBOL_PATTERN.match(source):
            raise ConfigError("--alias", value, "NEWSYM=SRCSYM, both Binance symbols")
        if new in aliases:
            raise ConfigError("--alias", value, f"{new} is given twice")
        aliases[new] = source
    return aliases


def build_exchange_info(
    http_dir: Path, market: str, symbols: Iterable[str], aliases: dict[str, str]
) -> dict[str, Any]:
    """The exchangeInfo document for the served symbols (recorded ones, then aliases)."""
    path = http_dir / EXCHANGE_INFO_FILES[market]
    try:
        recorded = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise RecordingError(str(path), None, f"cannot read exchangeInfo: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise RecordingError(str(path), None, f"bad JSON: {exc}") from None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("symbols"), list):
        raise RecordingError(str(path), None, "not an exchangeInfo response (no 'symbols' list)")
    entries = {entry.get("symbol"): entry for entry in recorded["symbols"]}
    served: list[dict[str, Any]] = []
    for symbol in symbols:
        if symbol not in entries:
            raise RecordingError(str(path), None, f"no exchangeInfo entry for {symbol}")
        served.append(_current_entry(entries[symbol], market))
    served_names = {entry["symbol"] for entry in served}
    for alias, source in aliases.items():
        if alias in served_names:
            raise ConfigError("--alias", f"{alias}={source}", f"{alias} is already served")
        if source not in served_names:
            raise ConfigError("--alias", f"{alias}={source}", f"{source} is not a recorded symbol")
        served.append(_alias_entry(_current_entry(entries[source], market), alias))
    info = {key: value for key, value in recorded.items() if key != "symbols"}
    info["symbols"] = served
    return info


def _current_entry(entry: dict[str, Any], market: str) -> dict[str, Any]:
    current = copy.deepcopy(entry)
    if market == SPOT:
        # NautilusTrader 1.221 requires this field; recordings made before Binance
        # introduced it lack it, and the node then fails to connect without a word.
        current.setdefault("allowTrailingStop", False)
    return current


def _alias_entry(entry: dict[str, Any], alias: str) -> dict[str, Any]:
    quote = entry["quoteAsset"]
    if not alias.endswith(quote) or alias == quote:
        raise ConfigError("--alias", alias, f"the new symbol must end with quote asset {quote}")
    entry["symbol"] = alias
    entry["baseAsset"] = alias[: -len(quote)]
    if "pair" in entry:
        entry["pair"] = alias
    return entry


def trade_fees(symbols: Iterable[str]) -> list[dict[str, str]]:
    """The spot ``/sapi/v1/asset/tradeFee`` answer for ``symbols``."""
    return [
        {"symbol": symbol, "makerCommission": SPOT_COMMISSION, "takerCommission": SPOT_COMMISSION}
        for symbol in symbols
    ]


def futures_commission_rate(symbol: str) -> dict[str, str]:
    """The ``/fapi/v1/commissionRate`` answer for ``symbol`` (fee tier 0)."""
    return {
        "symbol": symbol,
        "makerCommissionRate": FUTURES_MAKER_COMMISSION,
        "takerCommissionRate": FUTURES_TAKER_COMMISSION,
    }


def futures_account(now_ms: int) -> dict[str, Any]:
    """A ``/fapi/v2/account`` answer for an empty fee-tier-0 account."""
    zero = "0.00000000"
    return {
        "feeTier": 0,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "updateTime": now_ms,
        "totalInitialMargin": zero,
        "totalMaintMargin": zero,
        "totalWalletBalance": zero,
        "totalUnrealizedProfit": zero,
        "totalMarginBalance": zero,
        "totalPositionInitialMargin": zero,
        "totalOpenOrderInitialMargin": zero,
        "totalCrossWalletBalance": zero,
        "totalCrossUnPnl": zero,
        "availableBalance": zero,
        "maxWithdrawAmount": zero,
        "assets": [],
        "positions": [],
    }
