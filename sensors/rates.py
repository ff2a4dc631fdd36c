"""Counter rates across sensor ticks, from the nodes' ``/metrics`` (pure, no I/O).

A sensor scrapes one counter from every live node each tick and keeps the samples of the
last few minutes in its cursor. The increase over a window is taken against the newest
sample at least ``window_ms`` old; a node whose ``started_ms`` changed (restarted) or that
was not there yet counts from zero, as Prometheus's ``rate`` does with a counter reset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ntplatform.churn import counter_increase

Series = dict[str, float]  # one counter's series of a node, by label value ("" unlabelled)
KEEP_MS = 600_000


@dataclass(frozen=True)
class Sample:
    at_ms: int  # Redis time
    values: dict[str, Series]  # node -> series
    started: dict[str, int]  # node -> started_ms of the process that served it


@dataclass(frozen=True)
class Increase:
    seconds: float
    by_node: dict[str, Series]
    restarted: list[str]  # nodes whose process changed within the window


@dataclass
class CounterHistory:
    samples: list[Sample] = field(default_factory=list)

    @classmethod
    def from_list(cls, raw: list[Any] | None) -> CounterHistory:
        return cls([Sample(int(s["at_ms"]), s["values"], s["started"]) for s in raw or []])

    def to_list(self) -> list[dict[str, Any]]:
        return [{"at_ms": s.at_ms, "values": s.values, "started": s.started} for s in self.samples]

    def add(self, sample: Sample) -> CounterHistory:
        kept = [s for s in self.samples if s.at_ms >= sample.at_ms - KEEP_MS and s.at_ms < sample.at_ms]
        return CounterHistory([*kept, sample])

    def increase(self, window_ms: int) -> Increase | None:
        """Growth from the newest sample at least ``window_ms`` old to the latest; None if too young."""
        if not self.samples:
            return None
        latest = self.samples[-1]
        older = [s for s in self.samples if s.at_ms <= latest.at_ms - window_ms]
        if not older:
            return None
        base = older[-1]
        restarted = sorted(
            node
            for node in latest.values
            if node in base.started and base.started[node] != latest.started.get(node)
        )
        by_node = {}
        for node, series in latest.values.items():
            before: Mapping[str, float] = {} if node in restarted else base.values.get(node, {})
            by_node[node] = {
                label: counter_increase(before.get(label, 0.0), value) for label, value in series.items()
            }
        return Increase((latest.at_ms - base.at_ms) / 1000, by_node, restarted)
