"""/docs (Swagger UI) and /redoc (ReDoc) in a real headless Chromium with no network but loopback
(conftest.py): both render every operation of /openapi.json from the service's own files, and ask
no other host for anything but ReDoc's footer logo, which ReDoc hides when it does not load."""

from __future__ import annotations

import httpx
import pytest

from ..conftest import RunningServer
from .conftest import By, console_errors, needs_browser, requested_urls, wait, webdriver

# The "API docs by Redocly" footer's logo: ReDoc renders it whatever its options, and removes it
# when it fails to load.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def operations(server: RunningServer) -> int:
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    return sum(len(methods) for methods in paths.values())


def test_the_pages_name_only_the_services_own_files(client: httpx.Client) -> None:
    for path in ("/docs", "/redoc"):
        page = client.get(path).text
        assert "cdn." not in page and "https://" not in page, path
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs/assets/redoc.standalone.js").status_code == 200


@needs_browser
@pytest.mark.parametrize(
    ("path", "operation"),
    [("/docs", ".opblock"), ("/redoc", "[data-section-id^='operation/']")],
    ids=["swagger-ui", "redoc"],
)
def test_the_docs_render_every_operation_offline(
    browser: webdriver.Chrome, server: RunningServer, path: str, operation: str
) -> None:
    expected = operations(server)
    browser.get_log("performance")
    browser.get_log("browser")
    browser.get(server.url + path)
    wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, operation)) >= expected)
    assert len(browser.find_elements(By.CSS_SELECTOR, operation)) == expected
    network = [u for u in requested_urls(browser) if u.startswith(("http:", "https:", "ws:", "wss:"))]
    elsewhere = [u for u in network if not u.startswith(server.url)]
    assert elsewhere == ([REDOC_LOGO] if path == "/redoc" else [])
    assert [e for e in console_errors(browser) if REDOC_LOGO not in e["message"]] == []
    if path == "/redoc":  # the footer without its logo
        wait(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, "img[alt='redocly logo']"))
