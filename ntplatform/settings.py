"""Producer settings: typed, frozen, loaded once from the environment (SPEC section 3).

``load_settings(environ)`` validates every variable and the cross-field rules and raises
``ConfigError`` with one line naming the variable, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from ntplatform.errors import ConfigError

T = TypeVar("T")

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,20}$")
LOG_LEVELS = ("debug", "info", "warning", "error")
ACCOUNTS = ("spot", "usdm")
MIN_SECRET_CHARS = 16
DEFAULT_REPLAY_PATH = Path("../shared/data/binance/spot")


@dataclass(frozen=True)
class Settings:
    """Everything one producer node needs, validated."""

    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    node_id: str = "producer-node-001"
    report_period_ms: int = 250
    slow_period_ms: int = 2000
    book_depth: int = 20
    trade_window_min: int = 30
    enable_kv_reports: bool = True
    enable_streams: bool = True
    enable_multi_instance: bool = True
    lease_ttl_ms: int = 2000
    min_hold_ms: int = 2000
    hrw_sticky_pct: float = 0.02
    rebalance_interval_sec: float = 2.5
    heartbeat_interval_ms: int = 1000
    log_level: str = "info"
    redis_url: str = "redis://127.0.0.1:6379/0"
    binance_account: str = "spot"
    binance_http_url: str | None = None
    binance_ws_url: str | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9101
    stream_maxlen: int = 100_000
    exchange_connect_timeout_sec: float = 30.0
    clock_offset_ms: int = 0
    control_secret: str | None = dataclasses.field(default=None, repr=False)  # NT_CONTROL_SECRET

    @property
    def heartbeat_ttl_ms(self) -> int:
        return 5 * self.heartbeat_interval_ms

    @property
    def uses_replay(self) -> bool:
        return self.binance_http_url is not None

    def coordination_fingerprint(self) -> str:
        """Short hash of the settings that every node of a fleet must share."""
        shared = (
            self.lease_ttl_ms,
            self.min_hold_ms,
            self.hrw_sticky_pct,
            self.rebalance_interval_sec,
            self.heartbeat_interval_ms,
            self.report_period_ms,
            self.symbols,
        )
        return hashlib.sha256(repr(shared).encode()).hexdigest()[:12]

    def public_dict(self) -> dict[str, Any]:
        """The settings as plain data for the ``configuration_loaded`` event."""
        data = dataclasses.asdict(self)
        data["symbols"] = list(self.symbols)
        data["heartbeat_ttl_ms"] = self.heartbeat_ttl_ms
        data["coordination_fingerprint"] = self.coordination_fingerprint()
        data["control_secret"] = "***" if self.control_secret else None
        return data


def _parse_int(name: str, raw: str, minimum: int, maximum: int | None = None) -> int:
    allowed = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(name, raw, allowed) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(name, raw, allowed)
    return value


def _parse_float(name: str, raw: str, minimum: float, maximum: float) -> float:
    allowed = f"a number from {minimum} to {maximum}"
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(name, raw, allowed) from None
    if not minimum <= value <= maximum:
        raise ConfigError(name, raw, allowed)
    return value


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ConfigError(name, raw, "true or false (also 1/0, yes/no, on/off)")


def _parse_choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    lowered = raw.strip().lower()
    if lowered not in choices:
        raise ConfigError(name, raw, "one of " + ", ".join(choices))
    return lowered


def parse_symbol(name: str, raw: str) -> str:
    """One symbol by the rule of ``SYMBOLS``, upper-cased; ``ConfigError`` naming ``name``."""
    symbol = raw.strip().upper()
    if not SYMBOL_PATTERN.match(symbol):
        raise ConfigError(name, raw, f"symbol {symbol!r} must be 2-20 letters or digits, e.g. BTCUSDT")
    return symbol


def _parse_symbols(name: str, raw: str) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in raw.split(","))
    if not parts or any(not s for s in parts):
        raise ConfigError(name, raw, "a comma-separated list of symbols such as BTCUSDT,ETHUSDT")
    symbols = tuple(parse_symbol(name, part) for part in parts)
    if len(set(symbols)) != len(symbols):
        raise ConfigError(name, raw, "each symbol at most once")
    return symbols


def _parse_node_id(name: str, raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", value):
        raise ConfigError(name, raw, "1-64 letters, digits, '.', '_' or '-'")
    return value


def _parse_url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    value = raw.strip()
    parsed = urlparse(value)
    try:
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    except ValueError:
        raise ConfigError(name, redact_url(value), "the port must be a number from 0 to 65535") from None
    located = parsed.path if parsed.scheme == "unix" else parsed.hostname  # unix:///run/redis.sock
    if parsed.scheme not in schemes or not located:
        raise ConfigError(name, redact_url(value), "a URL with scheme " + " or ".join(schemes))
    return value.rstrip("/")


REDIS_SCHEMES = ("redis", "rediss", "unix")


def parse_redis_url(name: str, raw: str) -> str:
    """A Redis URL (``redis://``, ``rediss://``, ``unix://``); ``ConfigError`` naming ``name``."""
    return _parse_url(name, raw, REDIS_SCHEMES)


def _parse_secret(name: str, raw: str) -> str:
    secret = raw.strip()
    if len(secret) < MIN_SECRET_CHARS:
        # Never echo the value: say only how long it was.
        raise ConfigError(name, f"<{len(secret)} characters>", f"at least {MIN_SECRET_CHARS} characters")
    return secret


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parsed = urlparse(url)
    if not parsed.password:
        return url
    return url.replace(f":{parsed.password}@", ":***@", 1)


def _int_in(minimum: int, maximum: int | None = None) -> Callable[[str, str], int]:
    return lambda name, raw: _parse_int(name, raw, minimum, maximum)


def _float_in(minimum: float, maximum: float) -> Callable[[str, str], float]:
    return lambda name, raw: _parse_float(name, raw, minimum, maximum)


def _choice_of(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    return lambda name, raw: _parse_choice(name, raw, choices)


def _url_with(schemes: tuple[str, ...]) -> Callable[[str, str], str]:
    return lambda name, raw: _parse_url(name, raw, schemes)


def _field(env: Mapping[str, str], name: str, parse: Callable[[str, str], T], default: T) -> T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return parse(name, raw)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the producer settings from ``environ`` (default ``os.environ``)."""
    env = os.environ if environ is None else environ
    d = Settings()
    settings = Settings(
        symbols=_field(env, "SYMBOLS", _parse_symbols, d.symbols),
        node_id=_field(env, "NT_NODE_ID", _parse_node_id, d.node_id),
        report_period_ms=_field(env, "NT_REPORT_PERIOD_MS", _int_in(10, 60_000), d.report_period_ms),
        slow_period_ms=_field(env, "NT_SLOW_PERIOD_MS", _int_in(0, 3_600_000), d.slow_period_ms),
        book_depth=_field(env, "NT_BOOK_DEPTH", _int_in(1, 1000), d.book_depth),
        trade_window_min=_field(env, "NT_TRADE_WINDOW_MIN", _int_in(1, 1440), d.trade_window_min),
        enable_kv_reports=_field(env, "NT_ENABLE_KV_REPORTS", _parse_bool, d.enable_kv_reports),
        enable_streams=_field(env, "NT_ENABLE_STREAMS", _parse_bool, d.enable_streams),
        enable_multi_instance=_field(env, "NT_ENABLE_MULTI_INSTANCE", _parse_bool, d.enable_multi_instance),
        lease_ttl_ms=_field(env, "NT_LEASE_TTL_MS", _int_in(100, 600_000), d.lease_ttl_ms),
        min_hold_ms=_field(env, "NT_MIN_HOLD_MS", _int_in(0, 3_600_000), d.min_hold_ms),
        hrw_sticky_pct=_field(env, "NT_HRW_STICKY_PCT", _float_in(0.0, 1.0), d.hrw_sticky_pct),
        rebalance_interval_sec=_field(
            env, "NT_REBALANCE_INTERVAL_SEC", _float_in(0.1, 3600.0), d.rebalance_interval_sec
        ),
        heartbeat_interval_ms=_field(
            env, "NT_HEARTBEAT_INTERVAL_MS", _int_in(50, 600_000), d.heartbeat_interval_ms
        ),
        log_level=_field(env, "NT_LOG_LEVEL", _choice_of(LOG_LEVELS), d.log_level),
        redis_url=_field(env, "REDIS_URL", parse_redis_url, d.redis_url),
        binance_account=_field(env, "NT_BINANCE_ACCOUNT", _choice_of(ACCOUNTS), d.binance_account),
        binance_http_url=_field(env, "NT_BINANCE_HTTP_URL", _url_with(("http", "https")), d.binance_http_url),
        binance_ws_url=_field(env, "NT_BINANCE_WS_URL", _url_with(("ws", "wss")), d.binance_ws_url),
        metrics_host=_field(env, "NT_METRICS_HOST", lambda n, r: r.strip(), d.metrics_host),
        metrics_port=_field(env, "NT_METRICS_PORT", _int_in(0, 65535), d.metrics_port),
        exchange_connect_timeout_sec=_field(
            env, "NT_EXCHANGE_CONNECT_TIMEOUT_SEC", _float_in(1.0, 600.0), d.exchange_connect_timeout_sec
        ),
        clock_offset_ms=_field(
            env, "NT_CLOCK_OFFSET_MS", _int_in(-86_400_000, 86_400_000), d.clock_offset_ms
        ),
        stream_maxlen=_field(env, "NT_STREAM_MAXLEN", _int_in(1, 100_000_000), d.stream_maxlen),
        control_secret=_field(env, "NT_CONTROL_SECRET", _parse_secret, d.control_secret),
    )
    _check_cross_fields(settings)
    return settings


@dataclass(frozen=True)
class DagsterSettings:
    """What the Dagster code location (``definitions.py``) reads from the environment."""

    redis_url: str = Settings.redis_url
    symbols: tuple[str, ...] = Settings.symbols
    expected_nodes: tuple[str, ...] = ()  # nodes that must always be heartbeating
    supervisor_url: str = "http://127.0.0.1:9199"  # the control API of `ntplatform up`
    stream_maxlen: int = Settings.stream_maxlen
    archive_dir: str = "data/archive"  # report_archive's Parquet: a folder or a URI (s3://...)
    backfill_dir: str = "data/backfill"  # report_backfill's Parquet


def _storage_root(name: str, raw: str) -> str:
    """A folder or filesystem URI that can hold Parquet (a local one is created on first write)."""
    from ntplatform.archive import check_root_offline  # pyarrow: only where the archive is used

    check_root_offline(raw.strip(), name)
    return raw.strip()


def _parse_node_ids(name: str, raw: str) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in raw.split(","))
    if any(not part for part in parts):
        raise ConfigError(name, raw, "a comma-separated list of node ids such as producer-node-001")
    return tuple(_parse_node_id(name, part) for part in parts)


def load_dagster_settings(environ: Mapping[str, str] | None = None) -> DagsterSettings:
    """The Dagster side's settings, validated with the producers' rules (same names, same limits)."""
    env = os.environ if environ is None else environ
    d = DagsterSettings()
    return DagsterSettings(
        redis_url=_field(env, "REDIS_URL", parse_redis_url, d.redis_url),
        symbols=_field(env, "SYMBOLS", _parse_symbols, d.symbols),
        expected_nodes=_field(env, "NT_EXPECTED_NODES", _parse_node_ids, d.expected_nodes),
        supervisor_url=_field(env, "NT_SUPERVISOR_URL", _url_with(("http", "https")), d.supervisor_url),
        stream_maxlen=_field(env, "NT_STREAM_MAXLEN", _int_in(1, 100_000_000), d.stream_maxlen),
        archive_dir=_field(env, "NT_ARCHIVE_DIR", _storage_root, d.archive_dir),
        backfill_dir=_field(env, "NT_BACKFILL_DIR", _storage_root, d.backfill_dir),
    )


def _check_cross_fields(s: Settings) -> None:
    if s.lease_ttl_ms <= s.report_period_ms:
        raise ConfigError(
            "NT_LEASE_TTL_MS",
            s.lease_ttl_ms,
            f"must exceed NT_REPORT_PERIOD_MS ({s.report_period_ms}) so a lease outlives one cycle",
        )
    if s.slow_period_ms and s.slow_period_ms < s.report_period_ms:
        raise ConfigError(
            "NT_SLOW_PERIOD_MS",
            s.slow_period_ms,
            f"0 (disabled) or at least NT_REPORT_PERIOD_MS ({s.report_period_ms})",
        )
    if (s.binance_http_url is None) != (s.binance_ws_url is None):
        raise ConfigError(
            "NT_BINANCE_WS_URL" if s.binance_ws_url is None else "NT_BINANCE_HTTP_URL",
            "",
            "set NT_BINANCE_HTTP_URL and NT_BINANCE_WS_URL together (or neither for live Binance)",
        )
