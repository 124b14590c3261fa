"""The web page in a real headless browser (Debian chromium driven by Playwright) against the embedded service
(`dvd360 serve`: real Redis, Celery worker and API, tiny model). Screenshots land in test-artifacts/web/."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a sandbox-less machine with a closed network; swiftshader gives WebGL without a GPU.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, service):
    assert (ROOT / "api/web/dist/index.html").is_file(), "the page is not built: run scripts/setup.sh"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(service)
    page.wait_for_selector("#base-model option[value=tiny]", state="attached", timeout=15_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page, name: str) -> np.ndarray:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = page.locator("#viewer").screenshot(path=str(ARTIFACTS / f"{name}.png"))
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def fill_form(page, steps: int, frames: int = 8) -> None:
    page.fill("#prompt", "a volcano with smoke, mountains under clouds, at sunset")
    page.select_option("#base-model", "tiny")
    page.fill("#num-frames", str(frames))
    page.fill("#steps", str(steps))
    page.select_option("#size", "64x128")
    page.fill("#seed", "7")


def test_generate_watch_and_look_around(page) -> None:
    fill_form(page, steps=3)
    page.check("input[name=motion][value=example]")
    page.click("#submit")
    page.wait_for_selector("#job-status[data-state]", timeout=20_000)
    page.wait_for_function(
        "['succeeded', 'failed', 'canceled'].includes(document.querySelector('#job-status').dataset.state)",
        timeout=90_000,
    )
    assert page.get_attribute("#job-status", "data-state") == "succeeded", page.text_content("#job-status")
    assert page.get_attribute("#progress-bar", "data-percent") == "100"
    # the viewer has the MP4 and draws it on the sphere
    page.wait_for_function("window.dvd360Viewer.video.readyState >= 2", timeout=15_000)
    page.wait_for_timeout(500)
    before = shot(page, "viewer-start")
    assert before.std() > 5, "the 360° canvas is blank"
    view = page.evaluate("window.dvd360Viewer.view")

    box = page.locator("#viewer canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.evaluate("window.dvd360Viewer.video.pause()")
    page.wait_for_timeout(300)
    paused = shot(page, "viewer-paused")
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 300, cy + 60, steps=8)
    page.mouse.up()
    page.wait_for_timeout(300)
    dragged = shot(page, "viewer-dragged")
    moved = page.evaluate("window.dvd360Viewer.view")
    assert moved["lon"] != view["lon"] and moved["lat"] != view["lat"]
    assert np.abs(dragged - paused).mean() > 2, "dragging did not change the rendered view"

    page.check("#flat")
    assert page.locator("#viewer video").is_visible() and not page.locator("#viewer canvas").is_visible()
    href = page.get_attribute("#download", "href")
    assert href and httpx.get(href if href.startswith("http") else page.url.rstrip("/") + href).content[4:8] == b"ftyp"
    assert page.locator("#history li").count() >= 1


def test_cancel_a_running_job(page) -> None:
    fill_form(page, steps=100, frames=16)
    page.click("#submit")
    page.wait_for_selector("#job-status[data-state=running]", timeout=30_000)
    page.click("#cancel")
    page.wait_for_selector("#job-status[data-state=canceled]", timeout=20_000)
    shot(page, "canceled")
    assert int(page.get_attribute("#progress-bar", "data-percent")) < 100
