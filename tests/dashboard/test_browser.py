"""End to end in a real headless Chromium (the system's, driven by Playwright): the dashboard
updates live, draws a chain's graph and cancels work.

``make test`` installs Chromium from the machine's package manager where it is missing.
Without it these tests skip, unless CI is set: then they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services import unavailable
from workmanager import OneTimeWorkRequest, Result, Worker, WorkManager
from workmanager.dashboard import create_app
from workmanager.info import State

from .conftest import WORKERS, Served

TIMEOUT_MS = 15_000


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        unavailable("Chromium is not installed (make test installs it: apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # The system's Chromium, not a downloaded build (nothing is fetched at test time).
        launched = playwright.chromium.launch(executable_path=chromium_path())
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert errors == [], errors  # no script error on any page


def live(page: Any, url: str) -> None:
    """Open a dashboard page and wait until its event stream is connected."""
    page.goto(url)
    page.wait_for_selector("#live.on")


def test_a_job_changes_from_enqueued_to_succeeded_without_a_reload(
    page: Any, wm: WorkManager, db: str, serve: Callable[..., Served], closing: Callable[[Any], Any]
) -> None:
    from playwright.sync_api import expect

    request = OneTimeWorkRequest("echo", input_data={"n": 1})
    wm.enqueue(request)
    served = serve(create_app(wm))
    live(page, served.url + "/")
    row = page.locator(f'tr[data-id="{request.id}"]')
    expect(row).to_have_attribute("data-state", "ENQUEUED")
    page.evaluate("window.stillTheSamePage = true")

    closing(WorkManager(db, workers=WORKERS)).start()  # a worker elsewhere runs it

    expect(row).to_have_attribute("data-state", "SUCCEEDED", timeout=TIMEOUT_MS)
    expect(row.locator(".badge")).to_have_text("SUCCEEDED")
    expect(page.locator('[data-count="SUCCEEDED"]')).to_have_text("1")
    expect(page.locator('[data-count="ENQUEUED"]')).to_have_text("0")
    assert page.evaluate("window.stillTheSamePage") is True
    assert page.locator('#chart path[data-state="SUCCEEDED"]').count() == 1


def test_a_chain_graph_opens_from_the_table_and_links_its_nodes(
    page: Any, wm: WorkManager, serve: Callable[..., Served]
) -> None:
    from playwright.sync_api import expect

    first = OneTimeWorkRequest("echo", initial_delay=3600)
    second, third = OneTimeWorkRequest("echo"), OneTimeWorkRequest("boom")
    wm.begin_with(first).then(second).then(third).enqueue()
    served = serve(create_app(wm))
    live(page, served.url + "/")
    page.locator(f'tr[data-id="{second.id}"] td.id a').click()
    expect(page.locator("#work-state")).to_have_text("BLOCKED")
    nodes = page.locator("svg.graph a.node")
    expect(nodes).to_have_count(3)
    states = {n.get_attribute("data-id"): n.get_attribute("data-state") for n in nodes.all()}
    assert states == {str(first.id): "ENQUEUED", str(second.id): "BLOCKED", str(third.id): "BLOCKED"}
    page.locator(f'svg.graph a.node[data-id="{first.id}"]').click()
    page.wait_for_url(f"**/work/{first.id}")
    expect(page.locator("#work-state")).to_have_text("ENQUEUED")


def test_cancel_from_a_work_page_cancels_the_job(
    page: Any, wm: WorkManager, serve: Callable[..., Served]
) -> None:
    from playwright.sync_api import expect

    request = OneTimeWorkRequest("echo", initial_delay=3600)
    wm.enqueue(request)
    served = serve(create_app(wm, read_only=False))
    live(page, f"{served.url}/work/{request.id}")
    page.locator("#cancel").click()
    expect(page.locator("#work-state")).to_have_text("CANCELLED")
    assert wm.get_work_info_by_id(request.id).state is State.CANCELLED
    expect(page.locator("#cancel")).to_have_count(0)
    expect(page.locator("#reenqueue")).to_have_count(1)


def test_a_work_page_follows_its_work_live(
    page: Any, wm: WorkManager, db: str, serve: Callable[..., Served], closing: Callable[[Any], Any]
) -> None:
    from playwright.sync_api import expect

    request = OneTimeWorkRequest("boom")
    wm.enqueue(request)
    served = serve(create_app(wm))
    live(page, f"{served.url}/work/{request.id}")
    expect(page.locator("#work-state")).to_have_text("ENQUEUED")
    closing(WorkManager(db, workers=WORKERS)).start()
    expect(page.locator("#work-state")).to_have_text("FAILED")
    expect(page.locator("#work-output")).to_contain_text("it went <b>wrong</b>")


def test_the_dashboard_screenshot(
    page: Any, wm: WorkManager, db: str, serve: Callable[..., Served], closing, gate, tmp_path: Path
) -> None:
    """A busy dashboard, as in the README (WM_DASHBOARD_SCREENSHOT=docs/dashboard.png writes it there)."""
    from playwright.sync_api import expect

    class Resize(Worker):
        name = "resize_image"

        def do_work(self) -> Result:
            if self.input_data.get("big"):
                self.set_progress({"progress": 0.62})
                gate.hold()
            return Result.success({"thumbnail": "thumb_" + str(self.input_data["file"])})

    class Upload(Worker):
        name = "upload"

        def do_work(self) -> Result:
            if self.input_data.get("size", 0) > 9:
                raise OSError("connection reset by peer")
            return Result.success({"url": f"https://cdn.example/{self.input_data['file']}"})

    class Bundle(Worker):
        name = "zip_album"

        def do_work(self) -> Result:
            return Result.success()

    runner = closing(WorkManager(db, workers=[Resize, Upload, Bundle, *WORKERS]))
    runner.start()
    served = serve(create_app(wm, read_only=False))
    live(page, served.url + "/")
    for i in range(8):
        request = OneTimeWorkRequest(
            Upload, input_data={"file": f"img_{i}.jpg", "size": i + 3}, tags={"uploads"}
        )
        runner.enqueue(request)
        runner.await_work(request.id, timeout=10)
        page.wait_for_timeout(250)  # the chart gets a point per second at most
    # A join: three resizes (one still running), then a zip, then its upload.
    resizes = [
        OneTimeWorkRequest(Resize, input_data={"file": f"beach_{i}.png", "big": i == 2}, tags={"album"})
        for i in range(3)
    ]
    bundle = OneTimeWorkRequest(Bundle, tags={"album"})
    upload = OneTimeWorkRequest(Upload, input_data={"file": "album.zip"}, tags={"album", "uploads"})
    runner.begin_with(resizes).then(bundle).then(upload).enqueue()
    gate.wait_started()
    for request in resizes[:2]:
        runner.await_work(request.id, timeout=10)
    waiting = [OneTimeWorkRequest("echo", initial_delay=3600, tags={"nightly"}) for _ in range(3)]
    wm.enqueue(waiting)
    expect(page.locator(f'tr[data-id="{resizes[2].id}"] progress')).to_have_count(1)
    expect(page.locator('[data-count="BLOCKED"]')).to_have_text("2")
    target = Path(os.environ.get("WM_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    page.screenshot(path=str(target))
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.goto(f"{served.url}/work/{bundle.id}")
    nodes = page.locator("svg.graph a.node")
    expect(nodes).to_have_count(5)
    assert sorted(n.get_attribute("data-state") for n in nodes.all()) == [
        "BLOCKED",
        "BLOCKED",
        "RUNNING",
        "SUCCEEDED",
        "SUCCEEDED",
    ]
    work_shot = target.with_name(target.stem + "-work.png")
    page.screenshot(path=str(work_shot))
    gate.release.set()


def test_a_job_changes_live_on_postgres(
    page: Any, postgres_database: str, serve: Callable[..., Served], closing: Callable[[Any], Any]
) -> None:
    """PostgreSQL tells the dashboard about another process's commit by LISTEN/NOTIFY."""
    from playwright.sync_api import expect

    wm = closing(WorkManager(postgres_database, workers=WORKERS))
    request = OneTimeWorkRequest("echo")
    wm.enqueue(request)
    served = serve(create_app(wm))
    live(page, served.url + "/")
    row = page.locator(f'tr[data-id="{request.id}"]')
    expect(row).to_have_attribute("data-state", "ENQUEUED")
    closing(WorkManager(postgres_database, workers=WORKERS)).start()
    expect(row).to_have_attribute("data-state", "SUCCEEDED")
    expect(page.locator('[data-count="SUCCEEDED"]')).to_have_text("1")
