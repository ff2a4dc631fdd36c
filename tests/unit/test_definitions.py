"""The whole Dagster code location loads, so a moved or renamed module fails CI."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_definitions_load_and_hold_the_archive() -> None:
    import definitions

    dg.Definitions.validate_loadable(definitions.defs)
    graph = definitions.defs.resolve_asset_graph()
    assert dg.AssetKey("report_archive") in graph.get_all_asset_keys()
    assert dg.AssetCheckKey(dg.AssetKey("report_archive"), "check_report_archive_complete") in (
        graph.asset_check_keys
    )
    assert definitions.defs.resolve_job_def("archive_reports").name == "archive_reports"
    assert definitions.defs.resolve_job_def("diagnose_fleet").name == "diagnose_fleet"
    assert definitions.defs.resolve_job_def("restart_producer").name == "restart_producer"
    heartbeat = definitions.defs.resolve_sensor_def("producer_heartbeat_sensor")
    assert {job.name for job in heartbeat.jobs} == {"restart_producer", "diagnose_fleet"}
    launches = {
        "lease_conflict_sensor": {"release_orphaned_leases", "force_rebalance"},
        "market_data_staleness_sensor": {"resubscribe_symbol"},
        "excessive_rebalancing_sensor": {"diagnose_fleet"},
        "ws_resubscribe_loop_sensor": {"diagnose_fleet"},
        "archive_ahead_of_trim_sensor": {"archive_reports"},
    }
    for name, jobs in launches.items():
        assert {job.name for job in definitions.defs.resolve_sensor_def(name).jobs} == jobs
    assert definitions.defs.resolve_schedule_def("archive_reports_schedule").cron_schedule == "5 * * * *"


def test_every_sensor_and_schedule_runs_from_the_start_and_says_what_it_does_as_every_job_does() -> None:
    import definitions

    repository = definitions.defs.get_repository_def()
    for sensor in repository.sensor_defs:
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING, sensor.name
        assert len(sensor.description or "") > 20, f"{sensor.name} has no description"
    for schedule in repository.schedule_defs:
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING, schedule.name
        assert len(schedule.description or "") > 20, f"{schedule.name} has no description"
    for job in repository.get_all_jobs():
        if not job.name.startswith("__"):
            assert len(job.description or "") > 20, f"{job.name} has no description"


def test_workspace_points_at_the_definitions_module() -> None:
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]["module_name"]
    assert (ROOT / f"{module}.py").is_file()
    instance = yaml.safe_load((ROOT / "dagster_home" / "dagster.yaml").read_text())
    assert "sqlite" in instance["storage"]


def test_a_bad_setting_stops_the_code_location_with_one_line_naming_it() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SYMBOLS": "garbage!!"}
    result = subprocess.run(
        [sys.executable, "-c", "import definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "ntplatform Dagster settings: invalid configuration: SYMBOLS='garbage!!'" in last
    assert "2-20 letters or digits" in last
