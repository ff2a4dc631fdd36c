"""The archive through an S3 endpoint (pyarrow's S3 filesystem): ``NT_ARCHIVE_DIR=s3://…``.

S3 cannot exist here, so a local S3-compatible server (moto's) stands in; the archive code
path is the production one: ``pafs.FileSystem.from_uri`` with the endpoint in the URI.
"""

from __future__ import annotations

import os
import urllib.request

import dagster as dg
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from assets.archive import report_archive
from assets.resources import ArchiveStorageResource, RedisResource
from tests.archive_samples import HOUR_START_MS, PARTITION_KEY, sample_report
from tests.conftest import PYTHON, ManagedProcess, RedisProcess, free_port, python_env, wait_for
from tests.integration.test_archive import _xadd

pytestmark = pytest.mark.integration


def _up(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
        return response.status == 200


def test_archive_partition_written_and_read_back_through_s3(
    processes, tmp_path, redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    server = ManagedProcess(
        [os.path.join(os.path.dirname(PYTHON), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        python_env(),
        tmp_path / "s3.log",
    )
    processes.append(server)
    wait_for(lambda: _up(port), 60, "the local S3 endpoint")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    endpoint = {"endpoint_override": f"127.0.0.1:{port}", "scheme": "http", "region": "us-east-1"}
    pafs.S3FileSystem(**endpoint, allow_bucket_creation=True).create_dir("nt-archive")
    root = f"s3://nt-archive/reports?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"

    _xadd(redis_server, "BTCUSDT", [(HOUR_START_MS + 1000 * n, sample_report(n + 1)) for n in range(50)])
    result = dg.materialize(
        [report_archive],
        partition_key=PARTITION_KEY,
        resources={
            "redis_db": RedisResource(url=redis_server.url),
            "archive_storage": ArchiveStorageResource(root=root),
        },
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("report_archive")
    (path,) = materialization.metadata["paths"].value.values()
    assert path.startswith("s3://nt-archive/reports/symbol=BTCUSDT/date=")
    assert "?" not in path

    s3 = pafs.S3FileSystem(**endpoint)
    table = ds.dataset("nt-archive/reports", filesystem=s3, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 50
    assert sorted(table.column("seq").to_pylist()) == list(range(1, 51))
