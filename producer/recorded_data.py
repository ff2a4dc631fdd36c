"""Recordings as NautilusTrader data, for the backtest engine (``producer.backfill``).

The replay exchange serves a recording over the wire and NautilusTrader's Binance client
parses it; a backfill hands the same messages to the backtest engine directly, converted the
way that client converts them:

- the REST snapshot becomes one ``OrderBookDeltas`` (CLEAR, then every level) whose sequence
  is the snapshot's ``lastUpdateId``;
- each diff-depth event becomes one ``OrderBookDeltas`` (quantity 0 deletes the level) whose
  sequence is the event's final update id ``u``;
- each trade becomes a ``TradeTick`` (``m`` true: the buyer was the maker, so the seller was
  the aggressor).

``ts_init`` is the time the recorder received the message, ``ts_event`` the exchange's time.
Instruments come from the recorded ``exchangeInfo`` (tick and step sizes set the precisions).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from nautilus_trader.model.currencies import Currency
from nautilus_trader.model.data import BookOrder, OrderBookDelta, OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookAction, OrderSide, RecordFlag
from nautilus_trader.model.identifiers import InstrumentId, Symbol, TradeId, Venue
from nautilus_trader.model.instruments import CryptoPerpetual, CurrencyPair, Instrument
from nautilus_trader.model.objects import Price, Quantity

from ntplatform.errors import RecordingError
from ntplatform.replay.exchange_info import EXCHANGE_INFO_FILES
from ntplatform.replay.recording import DEPTH, SPOT, TRADE, Recording

VENUE = Venue("BINANCE")
NS_PER_MS = 1_000_000


def instrument_id(symbol: str, market: str) -> InstrumentId:
    """As NautilusTrader's Binance client names it: ``BTCUSDT.BINANCE``, ``BTCUSDT-PERP.BINANCE``."""
    return InstrumentId(Symbol(symbol if market == SPOT else f"{symbol}-PERP"), VENUE)


def _decimals(step: str) -> int:
    text = Decimal(step).normalize()
    return max(0, -int(text.as_tuple().exponent))


def _filter(entry: dict[str, Any], kind: str, field: str) -> str:
    for item in entry.get("filters", []):
        if item.get("filterType") == kind:
            return str(item[field])
    raise KeyError(f"{kind}.{field}")


def load_instrument(http_dir: Path, recording: Recording) -> Instrument:
    """The recording's instrument, built from the recorded exchangeInfo beside it."""
    path = http_dir / EXCHANGE_INFO_FILES[recording.market]
    try:
        entries = {e.get("symbol"): e for e in orjson.loads(path.read_bytes())["symbols"]}
        entry = entries[recording.symbol]
        tick, step = _filter(entry, "PRICE_FILTER", "tickSize"), _filter(entry, "LOT_SIZE", "stepSize")
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as error:
        raise RecordingError(
            str(path), None, f"no usable exchangeInfo for {recording.symbol}: {error}"
        ) from None
    price_precision, size_precision = _decimals(tick), _decimals(step)
    common: dict[str, Any] = {
        "instrument_id": instrument_id(recording.symbol, recording.market),
        "raw_symbol": Symbol(recording.symbol),
        "base_currency": Currency.from_str(entry["baseAsset"]),
        "quote_currency": Currency.from_str(entry["quoteAsset"]),
        "price_precision": price_precision,
        "size_precision": size_precision,
        "price_increment": Price(float(tick), price_precision),
        "size_increment": Quantity(float(step), size_precision),
        "ts_event": 0,
        "ts_init": 0,
        "maker_fee": Decimal("0.001"),
        "taker_fee": Decimal("0.001"),
        "margin_init": Decimal(0),
        "margin_maint": Decimal(0),
    }
    if recording.market == SPOT:
        return CurrencyPair(**common)
    return CryptoPerpetual(
        settlement_currency=Currency.from_str(entry["quoteAsset"]), is_inverse=False, **common
    )


def _levels(
    iid: InstrumentId,
    instrument: Instrument,
    levels: list[list[str]],
    side: OrderSide,
    sequence: int,
    ts: tuple[int, int],
) -> Iterator[OrderBookDelta]:
    for price, quantity in levels:
        size = Quantity(float(quantity), instrument.size_precision)
        action = BookAction.DELETE if size.as_double() == 0 else BookAction.UPDATE
        order = BookOrder(side, Price(float(price), instrument.price_precision), size, 0)
        yield OrderBookDelta(iid, action, order, 0, sequence, ts[0], ts[1])


def _with_last_flag(deltas: list[OrderBookDelta], snapshot: bool) -> list[OrderBookDelta]:
    flags = RecordFlag.F_SNAPSHOT if snapshot else 0
    result = []
    for index, delta in enumerate(deltas):
        last = RecordFlag.F_LAST if index == len(deltas) - 1 else 0
        result.append(
            OrderBookDelta(
                delta.instrument_id,
                delta.action,
                delta.order,
                flags | last,
                delta.sequence,
                delta.ts_event,
                delta.ts_init,
            )
        )
    return result


def snapshot_deltas(recording: Recording, instrument: Instrument) -> OrderBookDeltas:
    iid = instrument.id
    snap = recording.snapshot
    sequence = int(snap["lastUpdateId"])
    ts = (recording.snapshot_receive_ns, recording.snapshot_receive_ns)
    deltas = [OrderBookDelta.clear(iid, sequence, ts[0], ts[1])]
    for levels, side in ((snap["bids"], OrderSide.BUY), (snap["asks"], OrderSide.SELL)):
        deltas += [
            OrderBookDelta(iid, BookAction.ADD, d.order, 0, sequence, ts[0], ts[1])
            for d in _levels(iid, instrument, levels, side, sequence, ts)
            if d.action != BookAction.DELETE
        ]
    return OrderBookDeltas(iid, _with_last_flag(deltas, snapshot=True))


def timeline(recording: Recording, instrument: Instrument) -> Iterator[OrderBookDeltas | TradeTick]:
    """The recording as NautilusTrader data in receive order, snapshot first.

    Messages received before the snapshot that it does not cover are stamped with the
    snapshot's receive time, so they follow it (as the live client applies them).
    """
    iid = instrument.id
    yield snapshot_deltas(recording, instrument)
    for message in recording.messages:
        if message.channel not in (DEPTH, TRADE):
            continue
        data = orjson.loads(message.body)["data"]
        if message.channel == DEPTH:
            ts = (int(data["E"]) * NS_PER_MS, max(message.receive_ns, recording.snapshot_receive_ns))
            sequence = int(data["u"])
            deltas = [
                *_levels(iid, instrument, data["b"], OrderSide.BUY, sequence, ts),
                *_levels(iid, instrument, data["a"], OrderSide.SELL, sequence, ts),
            ]
            if deltas:
                yield OrderBookDeltas(iid, _with_last_flag(deltas, snapshot=False))
            continue
        yield TradeTick(
            iid,
            Price(float(data["p"]), instrument.price_precision),
            Quantity(float(data["q"]), instrument.size_precision),
            AggressorSide.SELLER if data["m"] else AggressorSide.BUYER,
            TradeId(str(data["t"])),
            int(data["T"]) * NS_PER_MS,
            max(message.receive_ns, recording.snapshot_receive_ns),
        )
