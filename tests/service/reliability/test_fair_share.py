"""Per-key policies over HTTP: the keys file's options, 429 with Retry-After over a key's rate,
X-Priority (403 above what a key may ask for), the per-key metrics (never the key), and what the
OpenAPI document says of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.api.routing import direct_routes
from service.http.access import KeyFileError, load_keys
from service.http.callers import key_label
from service.settings import Settings

from ..conftest import RunningServer, keyed_server, metric_value

KEY_LIMITED = "limited-key-0123456789"
KEY_INTERACTIVE = "interactive-key-0123456789"
KEY_PLAIN = "plain-key-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    keys = (
        f"# key  policy\n{KEY_LIMITED} name=limited rate=0.5 burst=8 queued=8\n"
        f"{KEY_INTERACTIVE}   name=interactive priority=high weight=2\n{KEY_PLAIN}\n"
    )
    settings = dict(max_images_per_request=8, max_queue_images=64, metrics_access="open")
    with keyed_server(model_dir, tmp_path_factory.mktemp("keys"), keys, **settings) as server:
        yield server


def sample(server: RunningServer, key: str, n: int = 1, **headers: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **{k.replace("_", "-"): v for k, v in headers.items()}}
    return httpx.post(server.url + "/sample", json={"n": n}, headers=headers, timeout=60)


def test_over_its_rate_a_key_gets_429_with_when_to_come_back(keyed: RunningServer) -> None:
    assert sample(keyed, KEY_LIMITED, 8).status_code == 200  # its whole burst
    r = sample(keyed, KEY_LIMITED, 2)
    assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/problems/rate-limited"
    assert 2 <= int(r.headers["retry-after"]) <= 4  # 2 images at 0.5 a second, less what refilled
    assert sample(keyed, KEY_PLAIN, 8).status_code == 200  # other keys have their own buckets
    assert httpx.get(keyed.url + "/problems/rate-limited").status_code == 200


def test_high_priority_is_only_for_the_keys_allowed_it(keyed: RunningServer) -> None:
    r = sample(keyed, KEY_PLAIN, x_priority="high")
    assert r.status_code == 403 and r.json()["type"] == "/problems/priority-not-allowed"
    assert sample(keyed, KEY_INTERACTIVE, x_priority="high").status_code == 200
    assert sample(keyed, KEY_PLAIN, x_priority="low").status_code == 200
    for value in ("urgent", "", "Low"):  # the documented enum's values only: none is taken as normal
        bad = sample(keyed, KEY_PLAIN, x_priority=value)
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["header", "x-priority"], value


def test_a_service_without_keys_takes_any_priority(server: RunningServer) -> None:
    r = httpx.post(server.url + "/sample", json={"n": 1}, headers={"X-Priority": "high"}, timeout=60)
    assert r.status_code == 200


def test_metrics_name_each_key_by_its_name_or_hash_never_the_key(keyed: RunningServer) -> None:
    assert sample(keyed, KEY_INTERACTIVE, 2).status_code == 200
    assert sample(keyed, KEY_PLAIN, 1).status_code == 200
    text = httpx.get(keyed.url + "/metrics").text
    assert metric_value(text, "vae_client_images_total", client="interactive") >= 2
    assert metric_value(text, "vae_client_images_total", client=key_label(KEY_PLAIN)) >= 1
    assert metric_value(text, "vae_client_queued_images", client="interactive") == 0
    assert not any(key in text for key in (KEY_LIMITED, KEY_INTERACTIVE, KEY_PLAIN))


def test_the_openapi_document_gives_the_priority_header_and_the_refusals(keyed: RunningServer) -> None:
    schema = httpx.get(keyed.url + "/openapi.json").json()
    paths = direct_routes(keyed.app.routes)  # every model endpoint, whatever its family
    assert {"/sample", "/sample/stream", "/upscale", "/encode"} <= set(paths)
    for path in paths:
        operation = schema["paths"][path]["post"]
        (priority,) = [p for p in operation["parameters"] if p["name"] == "X-Priority"]
        assert priority["in"] == "header" and priority["schema"]["enum"] == ["low", "normal", "high"]
        assert {"403", "429", "503"} <= set(operation["responses"]), path


def test_a_bad_line_of_the_keys_file_is_named_without_its_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    for line, why in [
        ("weight=0", "weight"),
        ("rate=fast", "not a number"),
        ("burst=4", "burst=4 is below max_images_per_request"),
        ("priority=urgent", "priority"),
        ("colour=blue", "unknown option"),
        ("name=has space", "expected option=value"),
    ]:
        keys.write_text(f"{KEY_PLAIN}\nsecret-key-0123456789 {line}\n")
        with pytest.raises(KeyFileError, match=why) as bad:
            load_keys(Settings(api_keys_file=keys))
        assert "line 2" in str(bad.value) and "secret-key" not in str(bad.value)
    keys.write_text(f"{KEY_PLAIN} name=same\n{KEY_LIMITED} name=same\n")
    with pytest.raises(KeyFileError, match="same name"):
        load_keys(Settings(api_keys_file=keys))


def test_the_settings_give_every_key_its_default_limits() -> None:
    callers = load_keys(Settings(api_keys=KEY_PLAIN, rate_limit=3.0, max_queued_images_per_key=128))
    (caller,) = callers.values()
    assert (caller.rate, caller.burst, caller.max_queued, caller.weight) == (3.0, 64, 128, 1.0)
    assert caller.label == key_label(KEY_PLAIN) and KEY_PLAIN not in caller.id
