"""The schema tells the truth: its bounds are the enforced ones, types are strict, the examples work
as written, messages show the numbers as sent, and answers given before routing keep their route's
label. And a 500 that remains carries the request id and closes its connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

import service.api.images.routes

from ..conftest import RunningServer, digit_like, metric_value, png_bytes


@pytest.fixture(scope="module")
def schema(server: RunningServer) -> dict[str, Any]:
    return httpx.get(server.url + "/openapi.json").json()


def prop(schema: dict[str, Any], model: str, name: str, kind: str) -> dict[str, Any]:
    """The `kind` branch of a request model's property."""
    p = schema["components"]["schemas"][model]["properties"][name]
    return next(s for s in (p, *p.get("anyOf", ())) if s.get("type") == kind)


def test_openapi_bounds_are_the_enforced_ones(schema: dict[str, Any], client: httpx.Client) -> None:
    n_max = prop(schema, "SampleRequest", "n", "integer")["maximum"]
    assert n_max == 64
    assert client.post("/sample", json={"n": n_max, "seed": 0}).status_code == 200
    assert client.post("/sample", json={"n": n_max + 1}).status_code == 422

    t = prop(schema, "SampleRequest", "temperature", "number")
    assert (t["minimum"], t["maximum"]) == (0.0, 2.0)
    assert client.post("/sample", json={"temperature": t["maximum"], "seed": 0}).status_code == 200
    assert client.post("/sample", json={"temperature": t["maximum"] + 1e-7}).status_code == 422

    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    label_max = prop(schema, "SampleRequest", "label", "integer")["maximum"]
    assert label_max == models["mnist"]["num_classes"] - 1
    assert client.post("/sample", json={"label": label_max, "seed": 0}).status_code == 200
    assert client.post("/sample", json={"label": label_max + 1}).status_code == 422

    layers = sorted(m["num_layers"] for m in models.values())
    t_list = prop(schema, "SampleRequest", "temperature", "array")
    assert (t_list["minItems"], t_list["maxItems"]) == (layers[0], layers[-1])
    assert prop(schema, "Guidance", "mean", "number")["maximum"] == 20.0
    scale = prop(schema, "ImageGenerationRequest", "guidance_scale", "number")
    assert (scale["minimum"], scale["maximum"]) == (0, 20.0)
    generate = {"prompt": "3", "seed": 0}
    assert client.post("/v1/images/generations", json={**generate, "guidance_scale": 20.0}).status_code == 200
    r = client.post("/v1/images/generations", json={**generate, "guidance_scale": 20.000001})
    assert r.status_code == 400 and r.json()["error"]["param"] == "guidance_scale"
    assert prop(schema, "ReconstructRequest", "layers", "integer")["maximum"] == layers[-1]
    assert prop(schema, "DecodeRequest", "latents", "array")["maxItems"] == layers[-1]
    # Where models differ, the description says what each accepts.
    description = schema["components"]["schemas"]["SampleRequest"]["description"]
    assert "mnist: labels 0..9" in description and "tiny: unconditional" in description


@pytest.mark.parametrize(
    "body",
    [{"label": False}, {"label": True}, {"n": "8"}, {"n": True}, {"seed": "1"}, {"n": 2.5}, {"label": "²"}],
    ids=["label-false", "label-true", "n-string", "n-true", "seed-string", "n-fraction", "label-superscript"],
)
def test_types_are_strict(client: httpx.Client, body: dict[str, Any]) -> None:
    r = client.post("/sample", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"][:2] == ["body", next(iter(body))]


def test_an_integer_is_an_integer_however_json_writes_it(client: httpx.Client) -> None:
    """JSON Schema's integer 2 may be written 2.0 (Python's json writes floats so): the same request."""
    plain = client.post("/sample", json={"n": 2, "seed": 689075, "label": 3})
    written = client.post("/sample", json={"n": 2.0, "seed": 689075.0, "label": 3.0})
    assert written.status_code == 200 and written.json()["data"] == plain.json()["data"]


def test_strict_types_in_forms_too(client: httpx.Client) -> None:
    r = client.post("/encode", files={"image": ("x.png", png_bytes(digit_like()))}, data={"label": "true"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "label"]


def request_examples(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every JSON example of every endpoint's request body."""
    found = []
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            body = (
                operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            )
            if body is None:
                continue
            if "$ref" in body:
                body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
            found += [(path, example) for example in body.get("examples", [])]
    return found


def test_every_example_works_as_written(schema: dict[str, Any], client: httpx.Client) -> None:
    examples = request_examples(schema)
    paths = {"/sample", "/sample/stream", "/reconstruct", "/encode", "/decode", "/interpolate"}
    paths |= {"/v1/images/generations", "/v2/models/{name}/infer"}
    assert {path for path, _ in examples} == paths
    for path, example in examples:
        r = client.post(path.replace("{name}", "mnist"), json=example)
        assert r.status_code == 200, (path, example, r.text)


def test_out_of_range_numbers_are_shown_as_sent(client: httpx.Client) -> None:
    r = client.post("/sample", json={"temperature": 2.0000001})
    assert r.status_code == 422
    assert "temperature 2.0000001 is out of range [0, 2]" in r.json()["detail"]
    r = client.post("/sample", json={"label": 1, "guidance": {"mean": 20.000001}})
    assert "20.000001" in r.json()["detail"]


def test_413_before_routing_is_labelled_with_the_route(server: RunningServer, client: httpx.Client) -> None:
    before = metric_value(server.metrics(), "vae_requests_total", endpoint="/encode", code="413")
    r = client.post("/encode", files={"image": ("x.png", b"x" * (600 * 1024))})
    assert r.status_code == 413
    after = metric_value(server.metrics(), "vae_requests_total", endpoint="/encode", code="413")
    assert after == before + 1


def test_an_unexpected_error_is_a_500_problem_with_the_request_id_that_closes_the_connection(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(service.api.images.routes, "sampling_for", broken)
    with server.client() as client:
        r = client.post("/sample", json={"n": 1}, headers={"X-Request-ID": "req-500-test"})
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["connection"] == "close"
        assert r.headers["x-request-id"] == "req-500-test" and r.json()["request_id"] == "req-500-test"
        assert "Traceback" not in r.text and "recursion" not in r.text.lower()
        monkeypatch.undo()
        assert client.post("/sample", json={"n": 1, "seed": 0}).status_code == 200  # a new connection


def test_no_response_shows_an_absolute_path(tmp_path: Path) -> None:
    """Broken model folders on /health/ready, provenance on /v1/models (written by whoever trained it)."""
    from model import HParams
    from model.checkpoint import save_model_folder
    from tests.factories import perturbed

    from ..conftest import SMALL_BLOCKS, running_server

    root = tmp_path / "models"
    tiny = perturbed(HParams.preset("tiny").replace(**SMALL_BLOCKS), seed=1)
    save_model_folder(
        tiny, root / "tiny", provenance={"command": "train --data /secret/place/data --out runs/x"}
    )
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("{}")
    with running_server(root, warmup=False) as server:
        ready = httpx.get(server.url + "/health/ready").text
        assert "broken" in ready and str(tmp_path) not in ready and "/tmp" not in ready
        models = httpx.get(server.url + "/v1/models").text
        assert "/secret" not in models and "--data data --out runs/x" in models
