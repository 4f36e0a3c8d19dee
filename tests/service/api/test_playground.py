"""The playground in a real headless Chromium against a real server (the browser: conftest.py,
offline but for loopback). The browser tests skip without Debian's `chromium` and `chromium-driver`.

With PLAYGROUND_SCREENSHOTS=<folder> the tests also write the README's screenshots there, one per
tab, as palette PNGs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.api.playground.routes import STATIC

from ..conftest import RunningServer, digit_like, keyed_server, png_bytes
from .conftest import (
    LAPTOP,
    ActionChains,
    By,
    Keys,
    Select,
    by_id,
    console_errors,
    needs_browser,
    wait,
    webdriver,
)

PHONE = (390, 844)


# --------------------------------------------------------------------------------------------
# The page's files (no browser needed)
# --------------------------------------------------------------------------------------------


def test_the_page_fetches_nothing_from_elsewhere() -> None:
    """Offline: no URL in the page's files points away from the service (no CDN, no fonts)."""
    files = [p for p in STATIC.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".html", ".css", ".js"}
    for path in files:
        text = path.read_text().replace('"http://www.w3.org/2000/svg"', "")  # a name, never fetched
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), path
        assert not re.search(r"""(src|href)=["'](?!/static/|/docs|data:)""", text), path


def test_the_page_ships_with_the_package() -> None:
    """Every file of the page matches a package-data pattern of pyproject.toml (so a wheel has it)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    patterns = tomllib.loads((STATIC.parents[3] / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["service.api.playground"]
    for path in STATIC.rglob("*"):
        if path.is_file():
            relative = path.relative_to(STATIC.parent)
            assert any(relative.match(p) for p in patterns), f"{relative} is missing from package-data"


def test_the_page_is_served_with_a_policy_that_allows_only_this_service(client: httpx.Client) -> None:
    for path in ("/", "/playground"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["content-security-policy"]
    for path in ("/static/playground.css", "/static/js/app.js"):
        assert client.get(path).status_code == 200, path
    assert client.get("/static/nope.js").status_code == 404


# --------------------------------------------------------------------------------------------
# The browser
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def page(browser: webdriver.Chrome, server: RunningServer) -> webdriver.Chrome:
    """The playground freshly loaded on a laptop-sized window, its models listed."""
    browser.set_window_size(*LAPTOP)
    browser.get(server.url + "/")
    browser.execute_script("sessionStorage.clear()")  # no API key from an earlier test
    browser.refresh()
    wait(browser, lambda b: b.find_element(By.ID, "model").get_attribute("value") == "mnist")
    browser.get_log("browser")  # start each test with an empty console
    browser.get_log("performance")
    return browser


def model_info(browser: webdriver.Chrome) -> dict:
    return httpx.get(browser.current_url.split("#")[0] + "v1/models/mnist").json()


def set_value(browser: webdriver.Chrome, id_: str, value: str) -> None:
    field = by_id(browser, id_)
    field.clear()
    field.send_keys(value)


def draw_a_seven(browser: webdriver.Chrome, canvas_css: str) -> None:
    """A 7 in three strokes' worth of pointer moves, as a mouse draws it."""
    canvas = browser.find_element(By.CSS_SELECTOR, canvas_css)
    w = canvas.size["width"]
    actions = ActionChains(browser).move_to_element_with_offset(canvas, int(-0.25 * w), int(-0.28 * w))
    actions.click_and_hold()
    for dx, dy in [(0.5, 0.0), (-0.1, 0.2), (-0.1, 0.2), (-0.1, 0.15)]:
        for _ in range(3):
            actions.move_by_offset(int(dx * w / 3), int(dy * w / 3))
    actions.release().perform()


def screenshot(browser: webdriver.Chrome, name: str) -> None:
    """Write the README's screenshot of the page (all of its height) when PLAYGROUND_SCREENSHOTS
    names a folder: a palette PNG, a few tens of kB."""
    folder = os.environ.get("PLAYGROUND_SCREENSHOTS")
    if not folder:
        return
    import io

    from PIL import Image

    width, height = browser.get_window_size()["width"], browser.get_window_size()["height"]
    chrome = height - browser.execute_script("return window.innerHeight")
    browser.set_window_size(
        width, browser.execute_script("return document.documentElement.scrollHeight") + chrome
    )
    try:
        image = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    finally:
        browser.set_window_size(width, height)
    small = image.quantize(colors=48, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    Path(folder).mkdir(parents=True, exist_ok=True)
    small.save(Path(folder) / f"playground-{name}.png", optimize=True)


# --------------------------------------------------------------------------------------------
# The tabs
# --------------------------------------------------------------------------------------------


@needs_browser
def test_the_page_loads_without_console_errors(page: webdriver.Chrome) -> None:
    page.refresh()
    wait(page, lambda b: by_id(b, "model").get_attribute("value") == "mnist")
    assert f"{model_info(page)['num_layers']} latent layers" in by_id(page, "model-info").text
    assert console_errors(page) == []


@needs_browser
def test_a_sample_grid_forms_from_previews_then_shows_its_final_images(page: webdriver.Chrome) -> None:
    # Record what the grid showed, in order, as the stream's events arrived.
    page.execute_script(
        """
        window.seen = [];
        new MutationObserver(() => {
          const g = document.getElementById('sample-grid');
          if (g.dataset.stage) window.seen.push(g.dataset.stage + ':' + g.dataset.resolution);
        }).observe(document.getElementById('sample-grid'),
                   {attributes: true, attributeFilter: ['data-stage']});
        """
    )
    set_value(page, "sample-n", "6")
    set_value(page, "sample-seed", "123")
    Select(by_id(page, "sample-label")).select_by_value("3")
    set_value(page, "sample-guide-mean", "1")
    page.find_element(By.CSS_SELECTOR, "#sample-form details summary").click()
    finest = page.find_elements(By.CSS_SELECTOR, "#sample-groups input")[-1]
    finest.send_keys(Keys.ARROW_LEFT * 4)  # the finest resolution's layers at 0.8, the others at 1
    by_id(page, "sample-go").click()
    wait(page, lambda b: by_id(b, "sample-grid").get_attribute("data-stage") == "final")
    seen = page.execute_script("return window.seen")
    assert seen[-1] == "final:32" and seen[0].startswith("preview:"), seen
    tiles = page.find_elements(By.CSS_SELECTOR, "#sample-grid .tile img")
    assert len(tiles) == 6 and all(t.get_attribute("src").startswith("data:image/png;base64,") for t in tiles)
    page.find_elements(By.CSS_SELECTOR, "#sample-grid .tile")[2].click()
    assert "seed 125" in by_id(page, "detail-seed").text
    curl = by_id(page, "detail-curl").text
    assert "/sample" in curl and '"seed":125' in curl and '"label":3' in curl and '"mean":1' in curl
    assert '"temperature":[1,' in curl and "0.8]" in curl  # one temperature per latent layer
    assert len(page.find_elements(By.CSS_SELECTOR, "#detail-stages img")) == len(seen)
    screenshot(page, "sample")
    assert console_errors(page) == []


def curl_body(browser: webdriver.Chrome) -> dict:
    """The JSON body of the detail panel's curl command."""
    return json.loads(re.search(r"-d '(.*?)'", by_id(browser, "detail-curl").text).group(1))


@needs_browser
@pytest.mark.parametrize(
    ("label", "shown", "sent"),
    [
        # the model's rule (seed 17 -> 7): the label left out, the guidance its recommended weights
        ("rule", "7 (by its seed)", None),
        ("", "none (unconditional)", {"label": None}),
        ("3", "3", {"label": 3, "guidance": {"mean": 0, "variance": 0}}),  # guidance off, not the default
    ],
)
def test_a_clicked_image_is_what_its_parameters_and_curl_command_draw(
    page: webdriver.Chrome, label: str, shown: str, sent: dict | None
) -> None:
    """What the detail panel says (label, guidance) is what was drawn: the curl command's body gives
    the clicked image through /sample, whatever the model's defaults."""
    set_value(page, "sample-n", "2")
    set_value(page, "sample-seed", "16")
    Select(by_id(page, "sample-label")).select_by_value(label)
    if label == "3":
        set_value(page, "sample-guide-mean", "0")
        set_value(page, "sample-guide-var", "0")
    by_id(page, "sample-go").click()
    wait(page, lambda b: by_id(b, "sample-grid").get_attribute("data-stage") == "final")
    page.find_elements(By.CSS_SELECTOR, "#sample-grid .tile")[1].click()
    params = dict(
        zip(
            *[
                [e.text for e in page.find_elements(By.CSS_SELECTOR, f"#detail-params {t}")]
                for t in ("dt", "dd")
            ]
        )
    )
    assert params["seed"] == "17" and params["label"] == shown
    body = curl_body(page)
    sent = sent or {"guidance": model_info(page)["sampling"]["guidance"]}
    assert {k: body[k] for k in ("label", "guidance") if k in body} == sent
    drawn = httpx.post(page.current_url.split("#")[0] + "sample", json=body).json()["data"][0]
    src = page.find_elements(By.CSS_SELECTOR, "#sample-grid .tile img")[1].get_attribute("src")
    assert src == "data:image/png;base64," + drawn["b64_json"]
    by_id(page, "detail-copy").click()  # to the clipboard, or selected where the page may not write it
    wait(
        page,
        lambda b: (
            by_id(b, "detail-copied").text in ("Copied.", "Selected: copy it with Ctrl+C (or \u2318C).")
        ),
    )
    assert console_errors(page) == []


@needs_browser
def test_a_drawn_digit_reconstructs_at_every_depth(page: webdriver.Chrome) -> None:
    by_id(page, "tab-reconstruct").click()
    draw_a_seven(page, "#recon-pad canvas")
    wait(page, lambda b: "grey-scale PNG" in b.find_element(By.CSS_SELECTOR, "#recon-pad").text)
    by_id(page, "recon-go").click()
    layers = model_info(page)["num_layers"]
    wait(page, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#recon-row figure")) == layers + 2)
    captions = [f.text for f in page.find_elements(By.CSS_SELECTOR, "#recon-row figcaption")]
    assert captions[0] == "input" and captions[1].startswith("0 layers") and "bits" in captions[-1]
    bits = [float(c.split("\n")[-1].split()[0]) for c in captions[1:]]
    assert bits[0] == 0 and bits[-1] > bits[0]  # the full reconstruction takes bits from the image
    screenshot(page, "reconstruct")
    assert console_errors(page) == []


@needs_browser
def test_the_kl_chart_renders_grouped_by_resolution(page: webdriver.Chrome) -> None:
    by_id(page, "tab-encode").click()
    draw_a_seven(page, "#encode-pad canvas")
    by_id(page, "encode-go").click()
    wait(page, lambda b: b.find_elements(By.CSS_SELECTOR, "#encode-chart rect.bar"))
    info = model_info(page)
    assert len(page.find_elements(By.CSS_SELECTOR, "#encode-chart rect.bar")) == info["num_layers"]
    rows = page.find_elements(By.CSS_SELECTOR, "#encode-table tbody tr")
    assert len(rows) == len({s[1] for s in info["latent_shapes"]})
    numbers = by_id(page, "encode-numbers").text
    assert "ELBO" in numbers and "bits/dim" in numbers and "distortion" in numbers
    screenshot(page, "encode")
    assert console_errors(page) == []


@needs_browser
def test_an_interpolation_appears_between_seeds_drawings_and_uploads(
    page: webdriver.Chrome, tmp_path: Path
) -> None:
    by_id(page, "tab-interpolate").click()
    set_value(page, "interp-steps", "6")
    by_id(page, "interp-go").click()
    wait(page, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#interp-row img")) == 6)
    captions = [f.text for f in page.find_elements(By.CSS_SELECTOR, "#interp-row figcaption")]
    assert captions[0] == "t = 0.00" and captions[-1] == "t = 1.00"
    screenshot(page, "interpolate")
    page.find_element(By.CSS_SELECTOR, 'input[name="interp-mode"][value="draw"]').click()
    draw_a_seven(page, "#interp-pad-a canvas")
    draw_a_seven(page, "#interp-pad-b canvas")
    set_value(page, "interp-steps", "3")
    by_id(page, "interp-go").click()
    wait(page, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#interp-row img")) == 3)
    assert not by_id(page, "interp-error").is_displayed()
    # Uploads of any size and colour are scaled and converted in the page to what the model takes.
    page.find_element(By.CSS_SELECTOR, 'input[name="interp-mode"][value="upload"]').click()
    for pad, image in (("a", digit_like(size=64, channels=3)), ("b", digit_like(seed=5)[::-1].copy())):
        path = tmp_path / f"{pad}.png"
        path.write_bytes(png_bytes(image))
        page.find_element(By.CSS_SELECTOR, f"#interp-pad-{pad} input[type=file]").send_keys(str(path))
        wait(page, lambda b, pad=pad: "32\u00d732 grey-scale PNG" in by_id(b, f"interp-pad-{pad}").text)
    set_value(page, "interp-steps", "4")
    by_id(page, "interp-go").click()
    wait(page, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#interp-row img")) == 4)
    assert not by_id(page, "interp-error").is_displayed()
    assert console_errors(page) == []


@needs_browser
def test_an_api_error_is_shown_as_its_detail_and_the_page_stays_usable(page: webdriver.Chrome) -> None:
    set_value(page, "sample-n", "1000")
    by_id(page, "sample-go").click()
    wait(page, lambda b: by_id(b, "sample-error").is_displayed())
    detail = httpx.post(page.current_url.split("#")[0] + "sample", json={"n": 1000}).json()["detail"]
    assert by_id(page, "sample-error").text == detail
    assert "limit of 64" in detail
    set_value(page, "sample-n", "2")
    by_id(page, "sample-go").click()
    wait(page, lambda b: by_id(b, "sample-grid").get_attribute("data-stage") == "final")
    assert not by_id(page, "sample-error").is_displayed()


@needs_browser
def test_the_api_key_goes_with_every_call(page: webdriver.Chrome) -> None:
    set_value(page, "api-key", "k-123\n")  # Enter applies it
    page.refresh()  # the key stays in the tab: the model list is fetched with it
    wait(page, lambda b: by_id(b, "model").get_attribute("value") == "mnist")
    assert by_id(page, "api-key").get_attribute("value") == "k-123"
    set_value(page, "sample-n", "1")
    by_id(page, "sample-go").click()
    wait(page, lambda b: by_id(b, "sample-grid").get_attribute("data-stage") == "final")
    sent = {}
    for entry in page.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            request = message["params"]["request"]
            path = "/" + request["url"].split("/", 3)[-1]
            if path in ("/v1/models", "/sample/stream"):
                sent[path] = request["headers"].get("Authorization")
    assert sent == {"/v1/models": "Bearer k-123", "/sample/stream": "Bearer k-123"}
    page.find_element(By.CSS_SELECTOR, "#sample-grid .tile").click()
    assert "Authorization: Bearer $VDVAE_API_KEY" in by_id(page, "detail-curl").text  # never the key itself


PLAIN_KEY = "playground-plain-0123456789abcdef"
HIGH_KEY = "playground-high-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with two keys: one that may ask for high priority, one that may not."""
    keys = f"{PLAIN_KEY}\n{HIGH_KEY} priority=high\n"
    with keyed_server(model_dir, tmp_path_factory.mktemp("keys"), keys) as server:
        yield server


def sample_priorities(browser: webdriver.Chrome, samples: int) -> list[str | None]:
    """Draw `samples` one-image grids; the X-Priority of each /sample/stream request sent, in order."""
    browser.get_log("performance")
    for _ in range(samples):
        set_value(browser, "sample-n", "1")
        by_id(browser, "sample-go").click()
        wait(browser, lambda b: by_id(b, "sample-grid").get_attribute("data-stage") == "final")
    sent = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            request = message["params"]["request"]
            if request["url"].endswith("/sample/stream"):
                headers = {k.lower(): v for k, v in request["headers"].items()}
                sent.append(headers.get("x-priority"))
    return sent


@needs_browser
def test_the_page_asks_for_high_priority_and_without_it_where_its_key_may_not(
    browser: webdriver.Chrome, keyed: RunningServer
) -> None:
    browser.set_window_size(*LAPTOP)
    browser.get(keyed.url + "/")
    for key, expected in ((HIGH_KEY, ["high", "high"]), (PLAIN_KEY, ["high", None, None])):
        browser.execute_script("sessionStorage.setItem('vdvae-api-key', arguments[0])", key)
        browser.refresh()
        wait(browser, lambda b: by_id(b, "model").get_attribute("value") == "mnist")
        # The plain key's first request is refused (403) and sent again without; the next one
        # goes without at once. Both grids are drawn.
        assert sample_priorities(browser, 2) == expected, key
        assert not by_id(browser, "sample-error").is_displayed()


@needs_browser
def test_a_phone_never_scrolls_sideways(page: webdriver.Chrome) -> None:
    page.set_window_size(*PHONE)
    try:
        for tab in ("sample", "reconstruct", "encode", "interpolate"):
            by_id(page, f"tab-{tab}").click()
            width = page.execute_script("return document.documentElement.clientWidth")
            assert page.execute_script("return document.documentElement.scrollWidth") <= width, tab
        by_id(page, "tab-sample").click()
        set_value(page, "sample-n", "4")
        by_id(page, "sample-go").click()
        wait(page, lambda b: by_id(b, "sample-grid").get_attribute("data-stage") == "final")
        width = page.execute_script("return document.documentElement.clientWidth")
        assert page.execute_script("return document.documentElement.scrollWidth") <= width
        screenshot(page, "phone")
        page.find_element(By.CSS_SELECTOR, "#sample-grid .tile").click()  # its long curl command too
        wait(page, lambda b: by_id(b, "sample-detail").is_displayed())
        assert page.execute_script("return document.documentElement.scrollWidth") <= width
    finally:
        page.set_window_size(*LAPTOP)


@needs_browser
def test_every_control_has_a_label_and_the_tabs_follow_the_keyboard(page: webdriver.Chrome) -> None:
    unlabelled = page.execute_script(
        """
        return [...document.querySelectorAll('input, select, button, textarea, canvas')].filter(e =>
          !(e.labels && e.labels.length) && !e.getAttribute('aria-label') &&
          !(e.tagName === 'BUTTON' && e.textContent.trim())).map(e => e.outerHTML.slice(0, 80));
        """
    )
    assert unlabelled == []
    by_id(page, "tab-sample").send_keys(Keys.ARROW_RIGHT)
    assert by_id(page, "tab-reconstruct").get_attribute("aria-selected") == "true"
    assert page.switch_to.active_element.get_attribute("id") == "tab-reconstruct"
    assert by_id(page, "panel-reconstruct").is_displayed() and not by_id(page, "panel-sample").is_displayed()
