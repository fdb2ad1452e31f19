"""Headless Chromium through chromedriver (Debian's packages), with the browser log kept."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def start_chromium(*, width: int = 1366, height: int = 768) -> tuple[webdriver.Chrome, Path]:
    """A fresh headless Chromium (its own profile folder, returned for cleanup)."""
    profile = Path(tempfile.mkdtemp(prefix="flipguard-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never runs (it would try the network).
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver, profile


def stop_chromium(driver: webdriver.Chrome, profile: Path) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def severe_messages(driver: webdriver.Chrome) -> list[str]:
    """The SEVERE entries of the browser console since the last call (reading clears it)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def full_page_screenshot(driver: webdriver.Chrome, path: Path, *, width: int) -> None:
    """A screenshot of the whole page at this width (the window grows to the page's height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    original = driver.get_window_size()
    driver.set_window_size(width, min(max(height + 140, 400), 6000))
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(original["width"], original["height"])
