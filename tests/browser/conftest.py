"""Playwright driving Debian's Chromium (/usr/bin/chromium) against the live server; no browser download."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make between
# browser steps are ordinary synchronous calls, which Django would otherwise refuse.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("ICBRIDGE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (or set ICBRIDGE_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def login(browser: Any, live_server: Any) -> Iterator[Callable[[str, str], Any]]:
    """Open a fresh browser context and log in through the admin login form; returns the page."""
    contexts: list[Any] = []

    def log_in(username: str, password: str) -> Any:
        context = browser.new_context(base_url=live_server.url)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")
        return page

    yield log_in
    for context in contexts:
        context.close()


DOCS_IMG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "img")


def screenshot(page: Any, name: str) -> None:
    """Write docs/img/<name>.png at a small viewport, so docs/operations.md shows the console as it is now."""
    os.makedirs(DOCS_IMG, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 720})
    page.screenshot(path=os.path.join(DOCS_IMG, f"{name}.png"), full_page=False)
