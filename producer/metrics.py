"""Prometheus metrics of one producer node (SPEC section 6), on a private registry.

Buckets are chosen so the alert thresholds fall on bucket edges: data age at 1000 and
5000 ms, fast-cycle latency at 200 ms, slow-cycle latency at 1500 ms.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

DATA_AGE_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000)
CALC_LATENCY_BUCKETS_MS = (
    0.1,
    0.25,
    0.5,
    1,
    2,
    5,
    10,
    25,
    50,
    100,
    200,
    300,
    500,
    1000,
    1500,
    2000,
    5000,
)


class ProducerMetrics:
    """Every metric a producer exports. One instance per process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.data_age_ms = Histogram(
            "nt_data_age_ms",
            "Age of the newest market data in a published report (ms).",
            ["symbol"],
            buckets=DATA_AGE_BUCKETS_MS,
            registry=r,
        )
        self.calc_latency_ms = Histogram(
            "nt_calc_latency_ms",
            "Time to compute one analytics cycle (ms).",
            ["cycle"],
            buckets=CALC_LATENCY_BUCKETS_MS,
            registry=r,
        )
        self.report_publish = Counter(
            "nt_report_publish",
            "Reports written to Redis.",
            ["symbol"],
            registry=r,
        )
        self.lease_conflicts = Counter(
            "nt_lease_conflicts",
            "Report writes refused by the fencing check.",
            ["symbol"],
            registry=r,
        )
        self.hrw_rebalances = Counter(
            "nt_hrw_rebalances",
            "Ownership changes applied by this node.",
            registry=r,
        )
        self.node_heartbeat = Gauge(
            "nt_node_heartbeat",
            "1 while this node's heartbeats reach Redis, else 0.",
            ["node_id"],
            registry=r,
        )
        self.symbols_assigned = Gauge(
            "nt_symbols_assigned",
            "Symbols this node currently writes.",
            ["node_id"],
            registry=r,
        )
        self.ws_resubscribe = Counter(
            "nt_ws_resubscribe",
            "Market-data resubscriptions and book rebuilds, by reason.",
            ["reason"],
            registry=r,
        )
        self.book_resyncs = Counter(
            "nt_book_resync",
            "Order books rebuilt from a fresh snapshot, by reason.",
            ["symbol", "reason"],
            registry=r,
        )
        self.book_snapshot_failures = Counter(
            "nt_book_snapshot_failures",
            "Failed order-book snapshot requests, by kind (rate_limited: HTTP 429/418 or code -1003).",
            ["symbol", "kind"],
            registry=r,
        )
        self.book_synced = Gauge(
            "nt_book_synced",
            "1 when the symbol's book mirrors the exchange.",
            ["symbol"],
            registry=r,
        )
        self.report_dropped = Counter(
            "nt_report_dropped",
            "Reports not written, by reason.",
            ["symbol", "reason"],
            registry=r,
        )
        self.redis_errors = Counter(
            "nt_redis_errors",
            "Redis commands that failed, by operation.",
            ["operation"],
            registry=r,
        )
        self.redis_connected = Gauge(
            "nt_redis_connected",
            "1 while Redis answers this node.",
            registry=r,
        )
        self.cycle_skips = Counter(
            "nt_cycle_skips",
            "Analytics cycles skipped because they fell behind.",
            ["cycle"],
            registry=r,
        )
        self.config_mismatch = Gauge(
            "nt_config_mismatch_nodes",
            "Live peers whose coordination settings (lease TTL, min hold, ...) differ from this node's.",
            registry=r,
        )
        self.market_events = Counter(
            "nt_market_events",
            "Market-data events applied, by kind.",
            ["symbol", "kind"],
            registry=r,
        )
        self.control_commands = Counter(
            "nt_control_commands",
            "Commands received on the control channel, by command and outcome (accepted/refused).",
            ["command", "outcome"],
            registry=r,
        )

    def published_counts(self) -> dict[str, int]:
        """``nt_report_publish_total`` by symbol, as this process counted it."""
        return {
            sample.labels["symbol"]: int(sample.value)
            for family in self.report_publish.collect()
            for sample in family.samples
            if sample.name == "nt_report_publish_total"
        }
