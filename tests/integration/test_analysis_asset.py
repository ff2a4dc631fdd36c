"""``report_analysis`` over a real archive hour (the backfilled spot BTCUSDT recording), checked
against a second method: DuckDB SQL over the same Parquet files, and numpy's percentiles."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest

from assets.analysis import report_analysis
from assets.resources import ArchiveStorageResource
from ntplatform.replay.recording import load_recordings
from producer.backfill import BackfillSettings, backfill
from tests.conftest import SHARED_DATA
from tests.integration.dagster_runs import failure_description

pytestmark = pytest.mark.integration
PARTITION = "2024-08-08-23:00"  # the recordings were made from 23:54 to midnight UTC
GAP_MS = 300  # reports every 100 ms; a stretch of 3 periods without one is a gap


@pytest.fixture(scope="module")
def archive_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    recordings = load_recordings([SHARED_DATA / "spot"])  # BTCUSDT and ETHUSDT
    backfill(recordings, str(root), BackfillSettings(report_period_ms=100, slow_period_ms=1000))
    return root / "market=spot"  # a backfill's market folder has the archive's layout


def _analyse(root: Path | str, partition: str = PARTITION, gap_ms: int = GAP_MS) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [report_analysis],
        partition_key=partition,
        resources={"archive_storage": ArchiveStorageResource(root=str(root))},
        run_config={"ops": {"report_analysis": {"config": {"gap_ms": gap_ms}}}},
        raise_on_error=False,
    )


def test_analysis_numbers_agree_with_duckdb_and_the_plot_is_attached(archive_root: Path) -> None:
    result = _analyse(archive_root)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("report_analysis")
    metadata = materialization.metadata
    per_symbol = metadata["per_symbol"].value
    assert set(per_symbol) == {"BTCUSDT", "ETHUSDT"}

    files = str(archive_root / "symbol=*" / "date=*" / "hour=*" / "part.parquet")
    sql = duckdb.connect()
    for symbol, summary in per_symbol.items():
        count, max_age, mean_spread = sql.execute(
            "SELECT count(*), max(data_age_ms), avg(spread_bps) FROM read_parquet(?, hive_partitioning=true) "
            "WHERE symbol = ? AND date = '2024-08-08' AND hour = 23",
            [files, symbol],
        ).fetchone()
        inner_gaps = sql.execute(
            "SELECT count(*) FROM (SELECT epoch_ms(ts_stream_ms) - lag(epoch_ms(ts_stream_ms)) "
            "OVER (ORDER BY ts_stream_ms, stream_id) AS step FROM read_parquet(?, hive_partitioning=true) "
            "WHERE symbol = ?) WHERE step > ?",
            [files, symbol, GAP_MS],
        ).fetchone()[0]
        ages = sql.execute(
            "SELECT data_age_ms FROM read_parquet(?, hive_partitioning=true) WHERE symbol = ?",
            [files, symbol],
        ).fetchnumpy()["data_age_ms"]
        assert summary["reports"] == count
        assert summary["data_age_max_ms"] == max_age
        assert summary["spread_bps_mean"] == pytest.approx(mean_spread, rel=1e-9)
        assert summary["data_age_p95_ms"] == np.percentile(ages, 95, method="inverted_cdf")
        assert summary["data_age_p50_ms"] == np.percentile(ages, 50, method="inverted_cdf")
        # The hour began 54 minutes before the recording: that edge is one more gap.
        assert summary["gaps"] == inner_gaps + 1
        assert summary["writers"] == "backfill"
        assert summary["writer_changes"] == 0
        assert summary["publish_rate_per_s"] == pytest.approx(count / 3600)

    image = metadata["plot"].value
    assert image.startswith("![analysis](data:image/png;base64,")
    png = base64.b64decode(image.split(",", 1)[1].rstrip(")"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(metadata["plot_path"].value).read_bytes() == png
    assert Path(metadata["summary_path"].value).exists()
    assert metadata["unarchived_symbols"].value == []


def test_analysis_of_an_hour_that_was_never_archived_fails_and_writes_nothing(archive_root: Path) -> None:
    result = _analyse(archive_root, "2024-08-08-21:00")  # BTCUSDT and ETHUSDT are archived, not this hour
    assert failure_description(result) == (
        f"hour 2024-08-08-21:00 is not archived under NT_ARCHIVE_DIR={archive_root}: "
        "materialise report_archive for it first"
    )
    assert not (archive_root / "_analysis" / "date=2024-08-08" / "hour=21").exists()


def test_analysis_leaves_out_symbols_not_archived_in_the_hour(archive_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    shutil.copytree(archive_root / "symbol=BTCUSDT", root / "symbol=BTCUSDT")
    (root / "symbol=SOLUSDT" / "date=2024-08-07" / "hour=10").mkdir(parents=True)  # another hour only
    result = _analyse(root)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("report_analysis")
    assert set(materialization.metadata["per_symbol"].value) == {"BTCUSDT"}
    assert materialization.metadata["unarchived_symbols"].value == ["SOLUSDT"]


def test_analysis_of_an_archive_dir_that_is_a_file_fails_naming_nt_archive_dir(tmp_path: Path) -> None:
    afile = tmp_path / "a-file"
    afile.write_bytes(b"kept")
    assert failure_description(_analyse(afile)) == (
        f"invalid configuration: NT_ARCHIVE_DIR='{afile}': it is a file ({afile}); a folder is needed"
    )
    assert failure_description(_analyse("ftp://x/y")).startswith(
        "invalid configuration: NT_ARCHIVE_DIR='ftp://x/y': scheme ftp:// is not supported"
    )


@pytest.mark.parametrize("gap_ms", [0, -5, 3_600_001])
def test_analysis_gap_threshold_out_of_range_fails_in_one_line(archive_root: Path, gap_ms: int) -> None:
    assert failure_description(_analyse(archive_root, gap_ms=gap_ms)) == (
        f"report_analysis config gap_ms={gap_ms}: must be an integer from 1 to 3600000"
    )
