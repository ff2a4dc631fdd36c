"""The docker-compose deployment is valid and wired like the local one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose_command() -> list[str]:
    plugin = (
        subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if shutil.which("docker")
        else None
    )
    if plugin is not None and plugin.returncode == 0:
        return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    assert standalone, "neither `docker compose` nor docker-compose found: run `make setup`"
    return [standalone]


def _config() -> dict:
    result = subprocess.run(
        [*_compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_config_is_valid_and_runs_three_distinct_producers():
    services = _config()["services"]
    producers = {name: s for name, s in services.items() if name.startswith("producer-node-")}
    assert sorted(producers) == ["producer-node-001", "producer-node-002", "producer-node-003"]
    for name, service in producers.items():
        assert service["environment"]["NT_NODE_ID"] == name
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["NT_BINANCE_HTTP_URL"] == "http://replay-exchange:8790"
    published = sorted(
        str(p["published"]) if isinstance(p, dict) else str(p).split(":")[-2]
        for s in producers.values()
        for p in s["ports"]
    )
    assert published == ["9101", "9102", "9103"]
    assert {"redis", "replay-exchange", "prometheus", "dagster-webserver", "dagster-daemon"} <= set(services)
    for name in ("dagster-webserver", "dagster-daemon"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["environment"]["DAGSTER_HOME"] == "/app/dagster_home"


def test_docker_prometheus_scrapes_every_compose_producer():
    config = yaml.safe_load((ROOT / "producer" / "config" / "prometheus-docker.yml").read_text())
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"producer-node-00{i}:9101" for i in (1, 2, 3)]
    assert config["rule_files"] == ["prometheus-alerts.yml"]
