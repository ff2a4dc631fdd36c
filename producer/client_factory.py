"""Builds the sequenced Binance data clients (:mod:`producer.binance_client`) for a node."""

from __future__ import annotations

import asyncio

from nautilus_trader.adapters.binance.common.enums import BinanceAccountType
from nautilus_trader.adapters.binance.common.urls import get_ws_base_url
from nautilus_trader.adapters.binance.config import BinanceDataClientConfig
from nautilus_trader.adapters.binance.data import BinanceCommonDataClient
from nautilus_trader.adapters.binance.factories import get_cached_binance_http_client
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.live.factories import LiveDataClientFactory

from producer.binance_client import SequencedFuturesDataClient, SequencedSpotDataClient, observability
from producer.instruments import ListedFuturesInstrumentProvider, ListedSpotInstrumentProvider


class SequencedBinanceDataClientFactory(LiveDataClientFactory):
    """Builds the sequenced clients exactly as NautilusTrader's own factory builds its."""

    @staticmethod
    def create(  # type: ignore[override]
        loop: asyncio.AbstractEventLoop,
        name: str,
        config: BinanceDataClientConfig,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
    ) -> BinanceCommonDataClient:
        client = get_cached_binance_http_client(
            clock=clock,
            account_type=config.account_type,
            api_key=config.api_key,
            api_secret=config.api_secret,
            key_type=config.key_type,
            base_url=config.base_url_http,
            is_testnet=config.testnet,
            is_us=config.us,
        )
        ws_url = config.base_url_ws or get_ws_base_url(
            account_type=config.account_type,
            is_testnet=config.testnet,
            is_us=config.us,
        )
        common = {
            "loop": loop,
            "client": client,
            "msgbus": msgbus,
            "cache": cache,
            "clock": clock,
            "account_type": config.account_type,
            "base_url_ws": ws_url,
            "name": name,
            "config": config,
        }
        if config.account_type.is_spot_or_margin:
            provider = ListedSpotInstrumentProvider(
                client=client,
                clock=clock,
                account_type=config.account_type,
                is_testnet=config.testnet,
                config=config.instrument_provider,
                venue=config.venue,
                event_log=observability.log,
            )
            return SequencedSpotDataClient(instrument_provider=provider, **common)
        if config.account_type != BinanceAccountType.USDT_FUTURES:
            raise ValueError(f"unsupported Binance account type {config.account_type}")
        futures_provider = ListedFuturesInstrumentProvider(
            client=client,
            clock=clock,
            account_type=config.account_type,
            config=config.instrument_provider,
            venue=config.venue,
            event_log=observability.log,
        )
        return SequencedFuturesDataClient(instrument_provider=futures_provider, **common)
