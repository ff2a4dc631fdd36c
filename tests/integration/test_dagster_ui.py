"""The Dagster UI as an operator sees it: a real ``dagster-webserver`` on ``workspace.yaml``,
rendered by Debian's headless Chromium.

Every sensor, schedule, job and asset that ``definitions.defs`` resolves to must show on its
page, so a definition that fails to load, or one the UI drops, fails here. The automation page
is also kept as a screenshot: in the test's tmp_path and in ``.run/ui/`` (ignored by git).
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import ROOT, ManagedProcess, RedisProcess, python_env, wait_for
from tests.integration.dagster_web import private_home, start_webserver, stop_with_children

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1400, 900)
# The UI loads its data with GraphQL after the page itself: each load gets this much virtual
# time, and a page that is still incomplete is loaded again until PAGE_DEADLINE_S.
VIRTUAL_TIME_BUDGET_MS = 10_000
PAGE_DEADLINE_S = 90
SCREENSHOT_DIR = ROOT / ".run" / "ui"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A blank 1400x900 page compresses to a few kB; the automation list with its rows is ~50 kB.
MIN_SCREENSHOT_BYTES = 20_000


@dataclass(frozen=True)
class Expected:
    """The names ``definitions.defs`` resolves to, as the UI lists them."""

    sensors: tuple[str, ...]
    schedules: tuple[str, ...]
    jobs: tuple[str, ...]
    assets: tuple[str, ...]


def expected_names() -> Expected:
    """Every sensor, schedule, job and asset of the code location, read at test time."""
    from definitions import defs

    repository = defs.get_repository_def()  # resolves jobs that sensors target but `jobs=` omits
    return Expected(
        sensors=tuple(sorted(s.name for s in repository.sensor_defs)),
        schedules=tuple(sorted(s.name for s in repository.schedule_defs)),
        # Dagster's implicit asset job (__ASSET_JOB) is never listed in the UI.
        jobs=tuple(sorted(j.name for j in repository.get_all_jobs() if not j.name.startswith("__"))),
        assets=tuple(sorted(key.path[-1] for key in repository.asset_graph.get_all_asset_keys())),
    )


class _VisibleText(HTMLParser):
    """The text a reader sees in an HTML document: no scripts, no styles."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.parts.append(data.strip())


def visible_text(document: str) -> str:
    parser = _VisibleText()
    parser.feed(document)
    return " ".join(parser.parts)


def chromium() -> Path:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} not found: the Dagster UI test needs Debian's headless Chromium; "
            "`make setup` installs it (apt-get install chromium)"
        )
    return CHROMIUM


class Browser:
    """One headless Chromium load per call, in a private profile; the rendered DOM as text."""

    def __init__(self, binary: Path, profile: Path) -> None:
        self.binary = binary
        self.profile = profile

    def render(self, url: str, screenshot: Path | None = None) -> str:
        argv = [
            str(self.binary),
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            # No first-run work and no calls home: this machine's network is closed.
            "--no-first-run",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={self.profile}",
            "--hide-scrollbars",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
            "--dump-dom",
        ]
        if screenshot is not None:
            argv.append(f"--screenshot={screenshot}")
        # Its own session, so a hung Chromium goes with its renderer and zygote processes.
        process = subprocess.Popen(
            [*argv, url], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            out, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        assert process.returncode == 0, f"chromium exited with {process.returncode} on {url}"
        return visible_text(out.decode(errors="replace"))


@dataclass
class DagsterUI:
    """A running ``dagster-webserver`` and the browser that reads it."""

    base_url: str
    browser: Browser
    server: ManagedProcess

    def page_showing(self, path: str, names: tuple[str, ...], screenshot: Path | None = None) -> str:
        """The text of ``path`` once every one of ``names`` shows on it (reloaded until then)."""
        seen = {"text": ""}

        def shows_all() -> bool:
            assert self.server.process.poll() is None, f"dagster-webserver exited:\n{self.server.output()}"
            seen["text"] = self.browser.render(self.base_url + path, screenshot)
            # Whole words: archive_reports must not be found inside archive_reports_schedule.
            return set(names) <= set(seen["text"].split())

        try:
            wait_for(shows_all, PAGE_DEADLINE_S, f"{path} to list {', '.join(names)}", interval_s=1)
        except AssertionError as error:
            missing = sorted(set(names) - set(seen["text"].split()))
            raise AssertionError(
                f"{path} never listed {missing}; page text: {seen['text'][:2000]!r}\n"
                f"webserver log tail:\n{self.server.output()[-3000:]}"
            ) from error
        return seen["text"]


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterUI]:
    """One webserver for the module: it takes ~15 s to start and the pages only read it."""
    binary = chromium()
    tmp_path = tmp_path_factory.mktemp("dagster_ui")
    redis_server = RedisProcess(tmp_path)  # the definitions bind this Redis, never the machine's
    redis_server.start()
    home = private_home(tmp_path)
    server: ManagedProcess | None = None
    try:
        server, base_url = start_webserver(
            python_env(DAGSTER_HOME=str(home), REDIS_URL=redis_server.url), tmp_path, PAGE_DEADLINE_S
        )
        yield DagsterUI(base_url, Browser(binary, tmp_path / "chromium-profile"), server)
    finally:
        if server is not None:
            stop_with_children(server)
        redis_server.stop()


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, the first after the signature."""
    assert data[:8] == PNG_SIGNATURE, f"not a PNG: starts with {data[:8]!r}"
    length, chunk = struct.unpack(">I4s", data[8:16])
    assert chunk == b"IHDR", f"first PNG chunk is {chunk!r}, not IHDR"
    assert length == 13
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_dagster_ui_automation_page_lists_every_sensor_and_schedule(
    dagster_ui: DagsterUI, tmp_path: Path
) -> None:
    expected = expected_names()
    assert {"producer_heartbeat_sensor", "lease_conflict_sensor"} <= set(expected.sensors)
    screenshot = tmp_path / "automation.png"

    text = dagster_ui.page_showing("/automation", expected.sensors + expected.schedules, screenshot)

    assert "Automation" in text
    # dagster.yaml turns off the "Join the Dagster community" dialog a fresh instance shows.
    assert "Join the Dagster community" not in text
    data = screenshot.read_bytes()
    assert png_size(data) == WINDOW
    assert len(data) > MIN_SCREENSHOT_BYTES, f"screenshot is only {len(data)} bytes: a blank page?"
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, SCREENSHOT_DIR / "automation.png")


def test_dagster_ui_jobs_page_lists_every_job(dagster_ui: DagsterUI) -> None:
    expected = expected_names()
    assert {"diagnose_fleet", "restart_producer", "archive_reports"} <= set(expected.jobs)

    text = dagster_ui.page_showing("/jobs", expected.jobs)

    assert "Jobs" in text


def test_dagster_ui_assets_page_lists_every_asset(dagster_ui: DagsterUI) -> None:
    expected = expected_names()
    assert "report_archive" in expected.assets

    text = dagster_ui.page_showing("/assets", expected.assets)

    assert "Assets" in text


def test_dagster_ui_sensor_page_says_what_it_watches_and_launches(dagster_ui: DagsterUI) -> None:
    from definitions import defs

    sensor = defs.resolve_sensor_def("producer_heartbeat_sensor")
    description = sensor.description or ""
    launches = tuple(sorted(job.name for job in sensor.jobs))
    assert launches == ("diagnose_fleet", "restart_producer")

    text = dagster_ui.page_showing("/locations/ntplatform/sensors/producer_heartbeat_sensor", launches)

    assert description.startswith("A node that was heartbeating stopped")
    assert description in text
