"""``dagster_home/postgres/dagster.yaml`` against the machine's PostgreSQL: a job of
``definitions.py`` runs in that instance and its run is recorded in the database.

Each test gets a fresh database (dropped afterwards) on ``127.0.0.1:5432`` as user ``postgres``
(trust authentication), and a private Redis for the fleet the job diagnoses.
"""

from __future__ import annotations

import importlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import dagster as dg
import pytest

from assets.resources import RedisResource
from sensors.fleet_diagnosis import incident_run_request
from sensors.resources import FleetResource
from tests.conftest import ROOT, RedisProcess

pytestmark = pytest.mark.integration

POSTGRES_CONFIG = ROOT / "dagster_home" / "postgres" / "dagster.yaml"
POSTGRES_SERVER = "postgres@127.0.0.1:5432"


def psycopg2() -> ModuleType:
    """psycopg2, which comes with dagster-postgres (the storage the dagster.yaml names)."""
    try:
        importlib.import_module("dagster_postgres")
        return importlib.import_module("psycopg2")
    except ImportError as error:
        pytest.fail(
            f"{error.name} is not installed: dagster-postgres is a dependency in pyproject.toml; "
            "`make setup` installs it"
        )


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """The libpq URL of a new, empty database on the machine's PostgreSQL, dropped afterwards."""
    driver = psycopg2()
    sql = importlib.import_module("psycopg2.sql")
    admin_url = f"postgresql://{POSTGRES_SERVER}/postgres"
    try:
        admin = driver.connect(admin_url, connect_timeout=5)
    except driver.OperationalError as error:
        pytest.fail(f"PostgreSQL is not reachable at {admin_url} (trust auth, user postgres): {error}")
    admin.autocommit = True  # CREATE and DROP DATABASE cannot run inside a transaction
    name = f"ntplatform_dagster_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield f"postgresql://{POSTGRES_SERVER}/{name}"
    finally:
        with admin.cursor() as cursor:
            # FORCE: a connection the instance left open must not keep the database alive.
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def recorded_run(url: str, run_id: str) -> tuple[str, str] | None:
    """The job name and status PostgreSQL holds for ``run_id`` in Dagster's ``runs`` table."""
    driver = psycopg2()
    with driver.connect(url, connect_timeout=5) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT pipeline_name, status FROM runs WHERE run_id = %s", (run_id,))
        row = cursor.fetchone()
    connection.close()
    return None if row is None else (str(row[0]), str(row[1]))


def test_postgres_instance_diagnose_fleet_run_recorded_in_runs_table(
    postgres_database: str, redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(POSTGRES_CONFIG, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; dagster-postgres brings psycopg2.
    monkeypatch.setenv(
        "NT_DAGSTER_PG_URL", postgres_database.replace("postgresql://", "postgresql+psycopg2://")
    )
    from definitions import defs

    job = defs.resolve_job_def("diagnose_fleet")
    fleet = FleetResource(redis=RedisResource(url=redis_server.url), symbols=["BTCUSDT", "ETHUSDT"])
    # The run a heartbeat sensor would request for an incident, with its config and tags.
    request = incident_run_request(f"test-{uuid.uuid4().hex[:8]}", "producer_heartbeat_sensor", [])

    # DagsterInstance.get() reads $DAGSTER_HOME/dagster.yaml, as the webserver and daemon do.
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = job.execute_in_process(
            run_config=request.run_config, tags=request.tags, instance=instance, resources={"fleet": fleet}
        )

    assert result.success
    assert recorded_run(postgres_database, result.run_id) == ("diagnose_fleet", "SUCCESS")
