"""The browser the playground's tests drive: Debian's `chromium` and `chromium-driver` through
selenium, headless (never a browser download: the driver is the system's and Selenium Manager stays
offline). Tests that need it are marked `needs_browser` and skip when either is missing; `.ci/run`
installs them in CI."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # the dev extra installs it
    webdriver = None

needs_browser = pytest.mark.skipif(
    webdriver is None or not (CHROMIUM and CHROMEDRIVER),
    reason="needs selenium, chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
)

# What the browser tests use of selenium, named here once.
__all__ = ["ActionChains", "By", "Keys", "Select", "by_id", "needs_browser", "wait", "webdriver"]

LAPTOP = (1100, 900)
TIMEOUT_S = 60  # each wait; a 2-core CI box shared with the server


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver or a browser
    profile = tempfile.mkdtemp(prefix="chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(browser: webdriver.Chrome, condition) -> None:
    WebDriverWait(browser, TIMEOUT_S).until(condition)


def by_id(browser: webdriver.Chrome, id_: str):
    return browser.find_element(By.ID, id_)
