"""A Dagster backfill of ``report_backfill`` over several recordings, launched as the asset
page's Materialize button does it (GraphQL ``launchPartitionBackfill``) and carried out by a
real ``dagster-daemon``: one run per recording, each logging its progress, the backfill's
partition counts moving to all materialised, and every run's reports in Parquet.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.dataset as ds
import pytest

from tests.conftest import SHARED_DATA, ManagedProcess, RedisProcess, python_env, wait_for
from tests.integration.dagster_web import (
    graphql,
    private_home,
    start_daemon,
    start_webserver,
    stop_with_children,
)

pytestmark = pytest.mark.integration

PARTITIONS = {"spot/btcusdt_20240808": "BTCUSDT", "spot/ethusdt_20240808": "ETHUSDT"}

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
  }
}
"""

STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      assetBackfillData {
        assetBackfillStatuses {
          ... on AssetPartitionsStatusCounts {
            numPartitionsTargeted numPartitionsInProgress numPartitionsMaterialized numPartitionsFailed
          }
        }
      }
    }
  }
}
"""


@dataclass
class Deployment:
    home: Path
    base_url: str
    out: Path


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    redis_server = RedisProcess(tmp_path)  # the sensors read this one, never the machine's
    redis_server.start()
    home = private_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the instance's dagster.yaml reads it
    out = tmp_path / "backfill"
    env = python_env(
        DAGSTER_HOME=str(home),
        REDIS_URL=redis_server.url,
        NT_RECORDINGS_DIR=str(SHARED_DATA),
        NT_BACKFILL_DIR=str(out),
    )
    started: list[ManagedProcess] = []
    try:
        webserver, base_url = start_webserver(env, tmp_path, timeout_s=120)
        started.append(webserver)
        started.append(start_daemon(env, tmp_path))
        yield Deployment(home, base_url, out)
    finally:
        for process in reversed(started):
            stop_with_children(process)
        redis_server.stop()


def counts(deployment: Deployment, backfill_id: str) -> tuple[str, dict[str, int]]:
    answer = graphql(deployment.base_url, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    assert answer["__typename"] == "PartitionBackfill", answer
    (asset,) = answer["assetBackfillData"]["assetBackfillStatuses"]
    return str(answer["status"]), dict(asset)


def test_backfill_of_two_recordings_runs_one_run_each_with_progress(deployment: Deployment) -> None:
    params = {
        "partitionNames": sorted(PARTITIONS),
        "assetSelection": [{"path": ["report_backfill"]}],
        "title": "recompute the spot recordings",
    }
    launched = graphql(deployment.base_url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    seen: list[tuple[str, dict[str, int]]] = []

    def finished() -> bool:
        status, by_status = counts(deployment, backfill_id)
        if not seen or seen[-1] != (status, by_status):
            seen.append((status, by_status))
        assert by_status["numPartitionsFailed"] == 0, seen
        return status not in ("REQUESTED", "CANCELING", "FAILING")

    started = time.monotonic()
    wait_for(finished, 600, f"backfill {backfill_id} to finish", interval_s=2)
    print(f"backfill of {len(PARTITIONS)} recordings: {time.monotonic() - started:.0f} s; {seen}")
    status, final = seen[-1]
    assert status == "COMPLETED_SUCCESS", seen
    assert final["numPartitionsTargeted"] == len(PARTITIONS)
    assert final["numPartitionsMaterialized"] == len(PARTITIONS)
    assert final["numPartitionsInProgress"] == 0

    with dg.DagsterInstance.from_config(str(deployment.home)) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(PARTITIONS)
        for run in runs:
            assert run.status == dg.DagsterRunStatus.SUCCESS
            partition = run.tags["dagster/partition"]
            messages = [str(r.user_message) for r in instance.all_logs(run.run_id)]
            assert any(f"{partition}: 100%" in m for m in messages), messages[-20:]
            (materialization,) = materializations(instance, run.run_id)
            symbol = PARTITIONS[partition]
            market = partition.split("/")[0]  # partitions are named after market/recording
            rows = ds.dataset(
                deployment.out / f"market={market}" / f"symbol={symbol}", format="parquet"
            ).count_rows()
            assert rows > 0
            assert materialization.metadata["reports"].value == rows


def materializations(instance: dg.DagsterInstance, run_id: str) -> list[Any]:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return [r.asset_materialization for r in records]
