"""Instrument providers that load the symbols the exchange lists and leave out the others.

NautilusTrader 1.221 loads all configured symbols at once, and one symbol the exchange does
not list (delisted, misspelt, from the other market) fails the whole load: spot's
``exchangeInfo?symbols=[...]`` answers -1121 "Invalid symbol" for the lot, and the futures
provider raises ``KeyError``. Since every node of a fleet shares ``SYMBOLS``, that one symbol
would stop the whole fleet. These providers find the listed symbols instead, log the others
once (``symbols_not_listed``) and load the rest; the actor then reports the missing ones as
unavailable (``instrument_not_found``, ``/health`` ``unavailable_symbols``, status degraded)
while the listed ones flow. With no listed symbol at all the node stops (``fatal_error``).

Spot asks per symbol only after the batch was refused; USDⓈ-M reads the one exchangeInfo answer
(every symbol, weight 1) once more before NautilusTrader's own load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nautilus_trader.adapters.binance.futures.providers import BinanceFuturesInstrumentProvider
from nautilus_trader.adapters.binance.http.error import BinanceClientError
from nautilus_trader.adapters.binance.spot.providers import BinanceSpotInstrumentProvider
from nautilus_trader.model.identifiers import InstrumentId

from ntplatform.logs import EventLog

INVALID_SYMBOL = -1121


def binance_symbol(instrument_id: InstrumentId) -> str:
    """The exchange's symbol for an instrument (``BTCUSDT-PERP.BINANCE`` -> ``BTCUSDT``)."""
    return instrument_id.symbol.value.removesuffix("-PERP")


def is_invalid_symbol(error: BaseException) -> bool:
    message = getattr(error, "message", None)
    return isinstance(message, Mapping) and message.get("code") == INVALID_SYMBOL


def _report_unlisted(
    log: EventLog, account: str, wanted: list[InstrumentId], listed: list[InstrumentId]
) -> None:
    missing = sorted(binance_symbol(i) for i in wanted if i not in listed)
    log.warning(
        "symbols_not_listed",
        account=account,
        symbols=missing,
        loading=sorted(binance_symbol(i) for i in listed),
        hint="the exchange does not list these: fix SYMBOLS or NT_BINANCE_ACCOUNT; the others are served",
    )


class ListedSpotInstrumentProvider(BinanceSpotInstrumentProvider):
    """Spot: on -1121 for the batch, ask for each symbol alone and load the listed ones."""

    def __init__(self, *args: Any, event_log: EventLog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._event_log = event_log

    async def load_ids_async(self, instrument_ids: list[InstrumentId], filters: dict | None = None) -> None:
        try:
            await super().load_ids_async(instrument_ids, filters)
            return
        except BinanceClientError as error:
            if not is_invalid_symbol(error):
                raise
        listed = [i for i in instrument_ids if await self._listed(i)]
        _report_unlisted(self._event_log, "spot", list(instrument_ids), listed)
        if listed:
            await super().load_ids_async(listed, filters)

    async def _listed(self, instrument_id: InstrumentId) -> bool:
        try:
            await self._http_market.query_spot_exchange_info(symbol=binance_symbol(instrument_id))
        except BinanceClientError as error:
            if is_invalid_symbol(error):
                return False
            raise
        return True


class ListedFuturesInstrumentProvider(BinanceFuturesInstrumentProvider):
    """USDⓈ-M: the exchange lists every symbol in one answer; load only those it contains."""

    def __init__(self, *args: Any, event_log: EventLog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._event_log = event_log

    async def load_ids_async(self, instrument_ids: list[InstrumentId], filters: dict | None = None) -> None:
        info = await self._http_market.query_futures_exchange_info()
        names = {entry.symbol for entry in info.symbols}
        listed = [i for i in instrument_ids if binance_symbol(i) in names]
        if len(listed) < len(instrument_ids):
            _report_unlisted(self._event_log, "usdm", list(instrument_ids), listed)
        if listed:
            await super().load_ids_async(listed, filters)
