"""Browser tests: a real headless Chromium (Debian's, through Playwright) over a real uvicorn.

One browser for the whole session, a fresh context (cookies) per test. Without Chromium
the tests skip, except under CI=true, where that is a failure (`.ci/browser` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from outreach.app import App
from outreach.settings import Settings
from tests.conftest import make_settings, require
from tests.conftest_http import TOKEN, serving

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def chromium_path() -> str:
    """$OUTREACH_CHROMIUM, else Debian's Chromium: on the PATH, or where the package puts it."""
    chosen = os.environ.get("OUTREACH_CHROMIUM")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise FileNotFoundError(f"OUTREACH_CHROMIUM={chosen} is not an executable")
        return chosen
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    raise FileNotFoundError("no chromium on the PATH (run .ci/browser)")


def artifacts() -> Path:
    """Where screenshots go: $OUTREACH_ARTIFACTS, else tests/browser/artifacts."""
    folder = Path(os.environ.get("OUTREACH_ARTIFACTS") or ARTIFACTS)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as `<name>.png` among the artifacts."""
    path = artifacts() / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole run."""
    path: list[str] = []
    require("Chromium", lambda: path.append(chromium_path()))
    require("Playwright", lambda: __import__("playwright.sync_api"))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path[0], headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def settings(workdir: Path) -> Settings:
    """SQLite in a temporary folder, one API token, an http base URL (as served here)."""
    return make_settings(workdir, api_tokens=TOKEN, base_url="http://127.0.0.1")


@pytest.fixture
def site(app: App) -> Iterator[str]:
    """The app served by uvicorn on a loopback port; its base URL."""
    with serving(app) as base:
        yield base


@pytest.fixture
def context(browser: Browser, site: str) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) pointed at the site."""
    fresh = browser.new_context(base_url=site, viewport={"width": 1280, "height": 900})
    fresh.set_default_timeout(10_000)
    try:
        yield fresh
    finally:
        fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A page in that fresh profile, not logged in."""
    return context.new_page()


def log_in(page: Page, token: str = TOKEN, fresh: bool = True) -> None:
    """Log in through the form, as a person does (on the form already shown: `fresh=False`)."""
    if fresh:
        page.goto("/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()


@pytest.fixture
def rep(page: Page) -> Page:
    """The page, logged in: it lands on the call queue."""
    log_in(page)
    page.wait_for_url("**/calls")
    return page
