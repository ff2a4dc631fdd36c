"""A real producer facing faults injected into the replay exchange (``/_replay/faults``).

Each test runs Redis, the replay exchange and one producer subprocess, breaks the
exchange on purpose, and checks what an operator would see: the log events and metrics
the alerts and runbooks name, and reports that carry on afterwards from a correct book
(the recorded ``bookTicker`` is the oracle for best bid and ask).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from assets.resources import RedisResource
from ntplatform import control
from sensors.resources import ControlResource
from tests.conftest import (
    PYTHON,
    SHARED_DATA,
    ManagedProcess,
    RedisProcess,
    free_port,
    python_env,
    start_replay_exchange,
    wait_for,
)
from tests.integration.recordings import book_tickers

pytestmark = pytest.mark.integration
SYMBOL = "BTCUSDT"
NODE = "producer-node-001"
CONTROL_SECRET = "a test fleet's control secret"  # noqa: S105 - the test's own
RECORDING = SHARED_DATA / "spot" / "btcusdt_20240808.gz"


class Rig:
    """Redis, the replay exchange (real time) and one producer writing every symbol."""

    def __init__(self, processes: list[ManagedProcess], tmp_path: Path, redis_server: RedisProcess) -> None:
        self.exchange_port = start_replay_exchange(processes, tmp_path, SHARED_DATA / "spot")
        self.metrics_port = free_port()
        self.producer = ManagedProcess(
            [PYTHON, "-m", "ntplatform.cli", "producer"],
            python_env(
                SYMBOLS=SYMBOL,
                REDIS_URL=redis_server.url,
                NT_BINANCE_HTTP_URL=f"http://127.0.0.1:{self.exchange_port}",
                NT_BINANCE_WS_URL=f"ws://127.0.0.1:{self.exchange_port}",
                NT_REPORT_PERIOD_MS="50",
                NT_METRICS_PORT=str(self.metrics_port),
                NT_ENABLE_MULTI_INSTANCE="false",
                NT_CONTROL_SECRET=CONTROL_SECRET,
            ),
            tmp_path / "producer.log",
        )
        processes.append(self.producer)
        self.redis = redis_server.client()
        self.redis_url = redis_server.url

    def wait_reporting(self) -> None:
        def reporting() -> bool:
            assert self.producer.process.poll() is None, f"producer exited:\n{self.producer.output()[-3000:]}"
            return self.latest_report() is not None and bool(self.events("book_synced"))

        wait_for(reporting, 90, "the producer's first report")

    def fault(self, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.exchange_port}/_replay/faults",
            data=json.dumps(body).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    def events(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        found = []
        for line in self.producer.output().splitlines():
            if line.startswith("{") and f'"event":"{name}"' in line:
                event = json.loads(line)
                if all(event.get(key) == value for key, value in fields.items()):
                    found.append(event)
        return found

    def latest_report(self) -> dict[str, Any] | None:
        raw = self.redis.get(f"report:{SYMBOL}")
        return None if raw is None else dict(json.loads(raw))

    def last_stream_id(self) -> bytes:
        entries = self.redis.xrevrange(f"report:stream:{SYMBOL}", count=1)
        return entries[0][0] if entries else b"0-0"

    def reports_after(self, stream_id: bytes) -> list[dict[str, Any]]:
        entries = self.redis.xrange(f"report:stream:{SYMBOL}", min=b"(" + stream_id)
        return [json.loads(fields[b"report"]) for _, fields in entries]

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            families = text_string_to_metric_families(response.read().decode())
            return {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in families
                for sample in family.samples
            }

    def followed(self) -> dict[str, Any]:
        """The symbol's entry in the node's ``/health`` (503 while degraded: still a body)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/health", timeout=5
            ) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read())
        return dict(body["symbols"][SYMBOL])

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def tickers() -> dict[int, tuple[float, float]]:
    """The exchange's best bid and ask by update id (the first replay epoch's ids)."""
    return book_tickers(RECORDING)


@pytest.fixture
def rig(processes, tmp_path, redis_server) -> Rig:
    started = Rig(processes, tmp_path, redis_server)
    started.wait_reporting()
    return started


def wait_correct_reports(
    rig: Rig, since: bytes, tickers: dict[int, tuple[float, float]], after_update_id: int = 0
) -> list[dict[str, Any]]:
    """Wait for reports after stream id ``since`` that match the exchange's bookTicker.

    Returns them once at least 20 reports past ``after_update_id`` have arrived, the
    book moved, and three matched a recorded bookTicker; fails on any mismatch.
    """

    def enough() -> list[dict[str, Any]] | None:
        assert rig.producer.process.poll() is None, f"producer exited:\n{rig.producer.output()[-3000:]}"
        reports = [r for r in rig.reports_after(since) if r["book_update_id"] > after_update_id]
        matched = [r for r in reports if r["book_update_id"] in tickers]
        mismatched = [r for r in matched if (r["best_bid"], r["best_ask"]) != tickers[r["book_update_id"]]]
        assert mismatched == [], f"reports disagree with the exchange's bookTicker: {mismatched[:3]}"
        moved = len({r["book_update_id"] for r in reports}) >= 5
        return reports if len(reports) >= 20 and moved and len(matched) >= 3 else None

    reports = wait_for(enough, 60, "reports from a correct book")
    assert isinstance(reports, list)
    update_ids = [r["book_update_id"] for r in reports]
    assert update_ids == sorted(update_ids), "book_update_id went backwards"
    seqs = [r["seq"] for r in reports]
    assert seqs == sorted(set(seqs))
    return reports


def test_drop_connections_producer_reconnects_resubscribes_and_keeps_correct_books(rig, tickers):
    synced_before = len(rig.events("book_synced", symbol=SYMBOL))

    answer = rig.fault({"fault": "drop_connections"})
    wait_for(lambda: rig.events("ws_resubscribe", reason="reconnect"), 60, "ws_resubscribe reason=reconnect")
    wait_for(
        lambda: rig.metric("nt_ws_resubscribe_total", reason="reconnect") >= 1,
        30,
        'nt_ws_resubscribe_total{reason="reconnect"} >= 1',
    )
    wait_for(lambda: len(rig.events("book_synced", symbol=SYMBOL)) > synced_before, 60, "book_synced again")
    resubscribed = rig.events("ws_resubscribe", reason="reconnect")[0]
    reports = wait_correct_reports(rig, rig.last_stream_id(), tickers)

    assert answer["injected"]["connections"] >= 1
    assert SYMBOL in resubscribed["symbols"]
    # One drop is exactly one reconnect and one rebuild per followed symbol. The new
    # connection's first events may show the gap before NautilusTrader reports the
    # reconnect: the rebuild is then counted as a sequence_gap, and the reconnect joins it.
    followed = len(resubscribed["symbols"])
    assert rig.metric("nt_ws_resubscribe_total", reason="reconnect") == 1
    assert rig.metric("nt_ws_resubscribe_total", reason="resync") == followed
    rebuilds = {
        reason: rig.metric("nt_book_resync_total", symbol=SYMBOL, reason=reason)
        for reason in ("reconnect", "sequence_gap")
    }
    expected = (
        {"reconnect": 0.0, "sequence_gap": 1.0}
        if SYMBOL in resubscribed["already_rebuilding"]
        else {
            "reconnect": 1.0,
            "sequence_gap": 0.0,
        }
    )
    assert rebuilds == expected
    assert reports[-1]["ts_published_ms"] > reports[0]["ts_published_ms"]
    assert rig.producer.process.poll() is None
    assert "Traceback" not in rig.producer.output()


def test_sequence_gap_producer_resyncs_then_reports_resume(rig, tickers):
    rig.fault({"fault": "sequence_gap", "symbol": SYMBOL})
    wait_for(
        lambda: rig.events("book_resync", symbol=SYMBOL, reason="sequence_gap"),
        30,
        "book_resync reason=sequence_gap",
    )
    resync = rig.events("book_resync", symbol=SYMBOL, reason="sequence_gap")[0]
    since = rig.last_stream_id()
    wait_for(lambda: _synced_after(rig, resync), 30, "book_synced after the resync")

    reports = wait_correct_reports(rig, since, tickers, after_update_id=resync["final_id"])

    assert resync["first_id"] > resync["expected_after"] + 1  # the skipped event's ids are missing
    assert rig.metric("nt_book_resync_total", symbol=SYMBOL, reason="sequence_gap") == 1
    assert rig.metric("nt_ws_resubscribe_total", reason="resync") >= 1
    assert all(0 <= r["data_age_ms"] < 1000 for r in reports)
    assert "Traceback" not in rig.producer.output()


def test_snapshot_older_than_the_buffered_stream_is_refused_and_taken_again(rig, tickers):
    # While stale_snapshot lasts, depth answers repeat the first one: the first rebuild
    # gets a current snapshot, a second one a snapshot from before the events it buffered.
    rig.fault({"fault": "stale_snapshot", "seconds": 8, "symbol": SYMBOL})
    rig.fault({"fault": "sequence_gap", "symbol": SYMBOL})
    wait_for(
        lambda: len(rig.events("book_synced", symbol=SYMBOL)) >= 2, 30, "book_synced after the first gap"
    )
    rig.fault({"fault": "sequence_gap", "symbol": SYMBOL})
    wait_for(lambda: len(rig.events("book_resync", symbol=SYMBOL)) >= 2, 30, "book_resync for the second gap")
    wait_for(
        lambda: len(rig.events("book_synced", symbol=SYMBOL)) >= 3,
        60,
        "book_synced after the stale snapshots",
    )
    since = rig.last_stream_id()

    reports = wait_correct_reports(rig, since, tickers)
    second_gap = rig.events("book_resync", symbol=SYMBOL)[1]
    refused = rig.events("book_snapshot_failed", symbol=SYMBOL)
    synced = rig.events("book_synced", symbol=SYMBOL)[2]
    during = [r for r in rig.reports_after(b"0-0") if _between(r, second_gap, synced, slack_s=0.2)]

    # Each stale snapshot ended at the same update id, behind the event that showed the gap.
    assert refused
    assert {(e["snapshot_update_id"], e["first_id"], e["rate_limited"]) for e in refused} == {
        (refused[0]["snapshot_update_id"], second_gap["first_id"], False)
    }
    assert refused[0]["snapshot_update_id"] < second_gap["first_id"] - 1
    assert "behind the stream" in refused[0]["error"]
    assert synced["attempt"] == len(refused) + 1  # one more snapshot each time, until a fresh one
    assert rig.metric("nt_book_snapshot_failures_total", symbol=SYMBOL, kind="behind_stream") == len(refused)
    assert rig.metric("nt_book_resync_total", symbol=SYMBOL, reason="sequence_gap") == 2
    assert during == []  # no report came from a refused snapshot
    assert all(0 <= r["data_age_ms"] < 1000 for r in reports)
    assert "Traceback" not in rig.producer.output()


def test_snapshot_older_than_the_book_already_built_is_refused_when_nothing_is_buffered(rig, tickers):
    # A gap's rebuild fetches the answer stale_snapshot then repeats. Later the stream goes
    # silent and the connection drops: the reconnect's rebuild has no buffered event to check
    # the repeated snapshot against, only the book it has already built.
    rig.fault({"fault": "stale_snapshot", "seconds": 12, "symbol": SYMBOL})
    rig.fault({"fault": "sequence_gap", "symbol": SYMBOL})
    wait_for(lambda: len(rig.events("book_synced", symbol=SYMBOL)) >= 2, 30, "book_synced after the gap")
    repeated = rig.events("book_synced", symbol=SYMBOL)[1]

    def moved_on() -> bool:  # past the repeated snapshot, and long enough for a reconnect to rebuild
        report = rig.latest_report()
        waited = time.time() - _event_s(repeated) > 1.5
        return waited and report is not None and report["book_update_id"] > repeated["update_id"]

    wait_for(moved_on, 30, "the book moving past the repeated snapshot")
    rig.fault({"fault": "stall", "seconds": 4, "symbol": SYMBOL})
    rig.fault({"fault": "drop_connections"})
    wait_for(
        lambda: len(rig.events("book_synced", symbol=SYMBOL)) >= 3, 60, "book_synced after the reconnect"
    )
    since = rig.last_stream_id()

    wait_correct_reports(rig, since, tickers)
    refused = rig.events("book_snapshot_failed", symbol=SYMBOL)
    update_ids = [r["book_update_id"] for r in rig.reports_after(b"0-0")]

    assert "behind the book already built" in refused[0]["error"]
    assert refused[0]["snapshot_update_id"] <= repeated["update_id"]
    assert update_ids == sorted(update_ids), "a report came from a book taken back in time"
    assert "Traceback" not in rig.producer.output()


def _between(report: dict[str, Any], first: dict[str, Any], last: dict[str, Any], slack_s: float) -> bool:
    """Whether ``report`` was published after event ``first`` (plus ``slack_s``) and before ``last``."""
    published_s = report["ts_published_ms"] / 1000
    return _event_s(first) + slack_s < published_s < _event_s(last)


def _event_s(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["ts"]).timestamp()


def _synced_after(rig: Rig, event: dict[str, Any]) -> bool:
    return any(e["ts"] >= event["ts"] for e in rig.events("book_synced", symbol=SYMBOL))


def test_stall_producer_data_age_rises_above_1000_then_falls_back(rig):
    def fresh() -> bool:
        report = rig.latest_report()
        return report is not None and report["data_age_ms"] < 1000

    wait_for(fresh, 30, "fresh data before the stall")
    stale_before = _stale_observations(rig)

    rig.fault({"fault": "stall", "seconds": 6, "symbol": SYMBOL})
    stalled_at_ms = time.time() * 1000

    def stale() -> bool:
        report = rig.latest_report()
        return report is not None and report["data_age_ms"] > 1000

    wait_for(stale, 10, "data_age_ms above 1000 during the stall", interval_s=0.05)

    def recovered() -> bool:
        report = rig.latest_report()
        return (
            report is not None
            and report["ts_published_ms"] > stalled_at_ms + 6000
            and report["data_age_ms"] < 1000
        )

    wait_for(recovered, 30, "data_age_ms back under 1000 after the stall")

    # The histogram behind MarketDataStale saw ages above the threshold.
    assert _stale_observations(rig) > stale_before
    assert rig.producer.process.poll() is None
    assert "Traceback" not in rig.producer.output()


def _stale_observations(rig: Rig) -> float:
    """How many ``nt_data_age_ms`` observations of the symbol exceeded 1000 ms."""
    metrics = rig.metrics()
    labels = (("symbol", SYMBOL),)
    total = metrics.get(("nt_data_age_ms_count", labels), 0.0)
    within = metrics.get(("nt_data_age_ms_bucket", (("le", "1000.0"), ("symbol", SYMBOL))), 0.0)
    return total - within


def test_http_429_during_resync_snapshot_fails_then_recovers(rig, tickers):
    rig.fault({"fault": "http_429", "seconds": 3})
    rig.fault({"fault": "sequence_gap", "symbol": SYMBOL})

    wait_for(lambda: rig.events("book_snapshot_failed", symbol=SYMBOL), 30, "book_snapshot_failed")
    failed = rig.events("book_snapshot_failed", symbol=SYMBOL)[0]
    resync = rig.events("book_resync", symbol=SYMBOL, reason="sequence_gap")[0]
    since = rig.last_stream_id()
    wait_for(
        lambda: [e for e in rig.events("book_synced", symbol=SYMBOL) if e["attempt"] > 1],
        60,
        "book_synced after a failed attempt",
    )

    wait_correct_reports(rig, since, tickers, after_update_id=resync["final_id"])

    assert "-1003" in failed["error"]
    assert failed["status"] == 429
    assert failed["rate_limited"] is True
    # Rate-limited: the next request waits 10 s, longer than the schedule, and the operator is told.
    (stuck,) = rig.events("book_resync_failed", symbol=SYMBOL)
    assert stuck["retry_in_s"] == 10
    assert rig.metric("nt_book_snapshot_failures_total", symbol=SYMBOL, kind="rate_limited") == 1
    assert "Traceback" not in rig.producer.output()


def test_http_429_for_longer_backs_off_instead_of_hammering_the_exchange(rig, tickers):
    rig.fault({"fault": "http_429", "seconds": 12})
    rig.fault({"fault": "sequence_gap", "symbol": SYMBOL})
    wait_for(lambda: rig.events("book_snapshot_failed", symbol=SYMBOL), 30, "book_snapshot_failed")
    limited_until_ms = time.time() * 1000 + 12_000
    resync = rig.events("book_resync", symbol=SYMBOL, reason="sequence_gap")[0]
    # Meanwhile /health says why the book is not synced, for Dagster's diagnosis and the operator.
    wait_for(lambda: rig.followed()["rate_limited"], 30, "/health to show the symbol rate-limited")
    limited = rig.followed()
    assert (limited["book_synced"], limited["snapshot_failures"]) == (False, 1)
    failed_ms = (
        datetime.fromisoformat(rig.events("book_snapshot_failed", symbol=SYMBOL)[0]["ts"]).timestamp() * 1000
    )
    assert 9_000 <= limited["snapshot_retry_ms"] - failed_ms <= 11_000  # the 10 s back-off

    def recovered() -> bool:
        assert rig.producer.process.poll() is None, f"producer exited:\n{rig.producer.output()[-3000:]}"
        report = rig.latest_report()
        return report is not None and report["ts_published_ms"] > limited_until_ms

    wait_for(recovered, 120, "a report after the 429 ended")
    wait_correct_reports(rig, rig.last_stream_id(), tickers, after_update_id=resync["final_id"])

    # NautilusTrader 1.221 drops the Retry-After header, so the producer backs off 10 s, then
    # 20 s: two requests into the 12 s limit instead of five (repeated requests into a 429 are
    # what escalates it into an IP ban on Binance), the third succeeds.
    first, second = rig.events("book_snapshot_failed", symbol=SYMBOL)
    assert first["rate_limited"]
    assert second["rate_limited"]
    assert elapsed_s(first, second) >= 10
    (stuck,) = rig.events("book_resync_failed", symbol=SYMBOL)
    assert (stuck["attempts"], stuck["retry_in_s"]) == (1, 10)
    (synced,) = [e for e in rig.events("book_synced", symbol=SYMBOL) if e["attempt"] > 1]
    assert synced["attempt"] == 3
    assert rig.metric("nt_book_snapshot_failures_total", symbol=SYMBOL, kind="rate_limited") == 2
    assert elapsed_s(second, synced) >= 20
    followed = rig.followed()
    assert (followed["book_synced"], followed["snapshot_failures"], followed["rate_limited"]) == (
        True,
        0,
        False,
    )
    assert "Traceback" not in rig.producer.output()


def elapsed_s(earlier: dict[str, Any], later: dict[str, Any]) -> float:
    """Seconds between two logged events, by their ``ts``."""
    return (datetime.fromisoformat(later["ts"]) - datetime.fromisoformat(earlier["ts"])).total_seconds()


def _control(rig: Rig, secret: str) -> ControlResource:
    return ControlResource(redis=RedisResource(url=rig.redis_url), secret=secret, ack_timeout_s=10)


def test_mute_leaves_the_symbol_stale_until_a_signed_resubscribe_brings_it_back(rig, tickers):
    rig.fault({"fault": "mute", "seconds": 600, "symbol": SYMBOL})
    wait_for(lambda: (rig.latest_report() or {}).get("data_age_ms", 0) > 5000, 60, "data older than 5 s")
    assert not rig.events("book_resync")  # the connection is up and nothing is lost: no self-repair
    since = rig.last_stream_id()

    # The operator's way: `ntplatform control` (the Dagster job sends the same command).
    sent = subprocess.run(
        [PYTHON, "-m", "ntplatform.cli", "control", "resubscribe", "--node", NODE, "--symbol", SYMBOL],
        env=python_env(REDIS_URL=rig.redis_url, NT_CONTROL_SECRET=CONTROL_SECRET),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert sent.returncode == 0, sent.stderr
    acks = [json.loads(line) for line in sent.stdout.splitlines()]
    assert acks == [{"id": acks[0]["id"], "node_id": NODE, "outcome": "accepted", "reason": None}]
    wait_for(lambda: rig.events("ws_resubscribe", reason="control_command", symbol=SYMBOL), 30, "resubscribe")
    reports = wait_correct_reports(rig, since, tickers)
    assert reports[-1]["data_age_ms"] < 1000
    assert rig.events("control_command_accepted", command="resubscribe", command_id=acks[0]["id"])
    assert rig.metric("nt_control_commands_total", command="resubscribe", outcome="accepted") == 1


def test_forged_replayed_and_garbage_commands_are_refused_and_logged(rig):
    forged = _control(rig, "not the fleet's secret at all").send("resubscribe", NODE, SYMBOL)
    assert [(a["outcome"], a["reason"]) for a in forged] == [("refused", "bad_signature")]
    (event,) = rig.events("control_command_refused", reason="bad_signature")
    assert event["command"] == "resubscribe"
    assert "forged" in event["hint"]
    assert CONTROL_SECRET not in rig.producer.output()

    genuine = control.make_command(CONTROL_SECRET, "rebalance", "*", int(time.time() * 1000))
    rig.redis.publish(control.CHANNEL, genuine)
    rig.redis.publish(control.CHANNEL, genuine)  # a recorded command sent again
    rig.redis.publish(control.CHANNEL, b"restart everything")
    wait_for(lambda: rig.events("control_command_refused", reason="malformed"), 30, "malformed refused")
    wait_for(lambda: rig.events("control_command_refused", reason="replayed"), 30, "replay refused")
    assert len(rig.events("control_command_accepted", command="rebalance")) == 1
    assert rig.metric("nt_control_commands_total", command="resubscribe", outcome="refused") == 1
    assert rig.metric("nt_control_commands_total", command="rebalance", outcome="refused") == 1
    assert rig.metric("nt_control_commands_total", command="unknown", outcome="refused") == 1
    assert not rig.events("ws_resubscribe", reason="control_command")  # the forged one did nothing
