"""API keys on and off, what stays open for probes and the playground, closing /metrics and the docs,
and CORS only for configured origins."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.http.access import KeyRing, load_keys
from service.settings import Settings

from ..conftest import KEY_A, KEY_B, RunningServer, running_server


def test_without_a_key_the_api_answers_401(keyed: RunningServer) -> None:
    for method, path in [
        ("POST", "/sample"),
        ("POST", "/encode"),
        ("GET", "/metrics"),
        ("POST", "/v2/models/mnist/infer"),
    ]:
        r = httpx.request(method, keyed.url + path, json={"n": 1})
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
        if path.startswith("/v2/"):  # the Open Inference Protocol's error shape
            assert r.json() == {
                "error": "this service needs an API key: send Authorization: Bearer KEY or X-API-Key: KEY"
            }
            continue
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "/problems/unauthorized" and r.json()["request_id"]
    for path in ("/v1/models", "/v1/images/generations"):  # OpenAI's
        r = httpx.request("GET" if path == "/v1/models" else "POST", keyed.url + path, json={"prompt": ""})
        assert r.status_code == 401 and r.headers["content-type"] == "application/json"
        assert (
            r.json()["error"]["type"] == "authentication_error"
            and r.json()["error"]["code"] == "unauthorized"
        )


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"X-API-Key": KEY_A + "x"},
        {"Authorization": f"Basic {KEY_A}"},
    ],
)
def test_a_wrong_key_answers_401(keyed: RunningServer, headers: dict[str, str]) -> None:
    r = httpx.post(keyed.url + "/sample", json={"n": 1}, headers=headers)
    assert r.status_code == 401 and r.json()["type"] == "/problems/unauthorized"


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {KEY_A}"}, {"X-API-Key": KEY_B}, {"authorization": f"bearer {KEY_B}"}],
)
def test_a_valid_key_from_the_setting_or_the_file_gets_in(
    keyed: RunningServer, headers: dict[str, str]
) -> None:
    r = httpx.post(keyed.url + "/sample", json={"n": 1, "seed": 0}, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    assert httpx.get(keyed.url + "/metrics", headers=headers).status_code == 200


def test_health_problem_pages_docs_and_the_playground_page_need_no_key(keyed: RunningServer) -> None:
    for path in ["/health/live", "/health/ready", "/problems/unauthorized", "/docs", "/openapi.json"]:
        assert httpx.get(keyed.url + path).status_code == 200, path
    for path in ["/", "/playground"]:  # static and harmless: 404 until the playground is served
        assert httpx.get(keyed.url + path).status_code != 401, path
    schema = httpx.get(keyed.url + "/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert schema["paths"]["/health/live"]["get"]["security"] == []


def test_metrics_and_docs_can_be_closed(model_dir: Path) -> None:
    with running_server(model_dir, metrics_access="closed", docs_access="closed", warmup=False) as server:
        for path in ["/metrics", "/docs", "/redoc", "/openapi.json"]:
            assert httpx.get(server.url + path).status_code == 404, path
        assert httpx.get(server.url + "/health/live").status_code == 200


def test_without_keys_the_service_is_open_and_without_origins_there_is_no_cors(client: httpx.Client) -> None:
    r = client.post("/sample", json={"n": 1, "seed": 0}, headers={"Origin": "https://elsewhere.example"})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    preflight = client.options(
        "/sample", headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_configured_origins_get_cors_and_preflights_need_no_key(model_dir: Path) -> None:
    origin = "https://playground.example"
    with running_server(model_dir, cors_origins=origin, api_keys=KEY_A, warmup=False) as server:
        preflight = httpx.options(
            server.url + "/sample",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        headers = {"Origin": origin, "Authorization": f"Bearer {KEY_A}"}
        r = httpx.post(server.url + "/sample", json={"n": 1}, headers=headers, timeout=60)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        exposed = r.headers["access-control-expose-headers"].lower()
        assert "x-seeds" in exposed and "x-labels" in exposed  # a page can read which image is which
        other = httpx.options(
            server.url + "/sample",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_keys_are_compared_as_whole_keys(tmp_path: Path) -> None:
    keys = KeyRing(load_keys(Settings(api_keys=f" {KEY_A} ,,{KEY_B}")))
    assert len(keys) == 2
    a, b = keys.caller(KEY_A.encode()), keys.caller(KEY_B.encode())
    assert a is not None and b is not None and a.id != b.id
    assert keys.caller(KEY_A[:-1].encode()) is None
    assert keys.caller(b"") is None and keys.caller(KEY_A.encode() + b"\0") is None


def test_an_unreadable_key_file_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    from service.http.access import KeyFileError

    with pytest.raises(KeyFileError, match="cannot read api_keys_file"):
        load_keys(Settings(api_keys_file=tmp_path / "missing.txt"))
