"""The published OpenAPI schema, with the bounds the service enforces, and the request-body entries
of the model endpoints (which read their own bodies, so FastAPI cannot document them itself).

The pydantic models (the families' bodies.py) hold what is true of every deployment; the rest depends on the
settings and on the models served: the most images a request may ask for, the temperature and
guidance ranges, the labels and latent layers of each model. This module writes those into the
schema, so that a client generated from it, or a property-based test, sends what the service
accepts: a bound is the one inputs/validation.py enforces (the loosest over the served models where they
differ, each model's listed in the description). The schema is cached once the models are loaded;
before that it is built without per-model bounds on each request.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from ..registry import ServedModel
from ..state import Phase, ServiceState

OPEN_OPERATIONS = ("/health/live", "/health/ready")  # no key needed, even when keys are on


def install_openapi(
    app: FastAPI, state: ServiceState, keys_required: bool, request_bodies: Sequence[type[BaseModel]]
) -> None:
    """Replace app.openapi with the schema built here. request_bodies: the request models the routes'
    request-body entries name by reference (json_request_body, image_request_body), in the order
    their schemas join the document's components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model_cls in request_bodies:
            model_schema = model_cls.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(model_schema.pop("$defs", {}))
            components[model_cls.__name__] = model_schema
        write_bounds(schema, state)
        if keys_required:
            require_keys(schema)
        if state.phase is Phase.READY:
            app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _typed(prop: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The parts of a property schema of JSON type `kind` (itself, or its anyOf branches)."""
    return [s for s in (prop, *prop.get("anyOf", ())) if s.get("type") == kind]


def _request_schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object schema a request body is validated against: the components, and the inline
    schemas of the endpoints that take JSON or a form."""
    found = [s for s in schema["components"]["schemas"].values() if "properties" in s]
    for operations in schema["paths"].values():
        for operation in operations.values():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                if "properties" in content.get("schema", {}):
                    found.append(content["schema"])
    return found


def label_range(m: ServedModel) -> str:
    names = " or a class name (GET /v1/models: classes)" if m.vae.classes is not None else ""
    return f"labels 0..{m.hp.num_classes - 1}{names}"


def write_bounds(schema: dict[str, Any], state: ServiceState) -> None:
    settings = state.settings
    models = list(state.registry.models.values())
    layers = sorted({m.num_layers for m in models})
    classes = [m.hp.num_classes for m in models if m.hp.conditional]
    per_model = "; ".join(
        f"{m.name}: {label_range(m) if m.hp.conditional else 'unconditional'}, "
        f"{m.num_layers} latent layers, {m.hp.image_size}x{m.hp.image_size}x{m.hp.image_channels} images"
        for m in models
    )
    temperature = {"minimum": settings.min_temperature, "maximum": settings.max_temperature}
    for obj in _request_schemas(schema):
        props = obj["properties"]
        if per_model and "model" in props:
            obj["description"] = (obj.get("description", "") + f"\n\nPer model: {per_model}.").strip()
        for name in ("n", "steps"):  # images a request asks for (steps: /interpolate's)
            if name in props:
                for p in _typed(props[name], "integer"):
                    p["maximum"] = min(p.get("maximum", math.inf), settings.max_images_per_request)
        if "temperature" in props:
            for p in _typed(props["temperature"], "number"):
                p.update(temperature)
            for p in _typed(props["temperature"], "array"):
                p["items"].update(temperature)
                if layers:
                    p.update(minItems=layers[0], maxItems=layers[-1])
        if "label" in props and classes:
            for p in _typed(props["label"], "integer"):
                p["maximum"] = max(classes) - 1
        for name in ("mean", "variance"):  # Guidance
            if name in props:
                for p in _typed(props[name], "number"):
                    p["maximum"] = settings.max_guidance
        if layers:
            for name in ("layers", "latents"):
                if name in props:
                    for p in _typed(props[name], "integer"):
                        p["maximum"] = layers[-1]
                    for p in _typed(props[name], "array"):
                        p["maxItems"] = layers[-1]


def require_keys(schema: dict[str, Any]) -> None:
    """Declare the two ways to send a key, needed everywhere but the health checks."""
    schema["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    schema["security"] = [{"bearer": []}, {"apiKey": []}]
    for path in OPEN_OPERATIONS:
        for operation in schema["paths"].get(path, {}).values():
            operation["security"] = []


# --------------------------------------------------------------------------------------------
# The model endpoints' request bodies
# --------------------------------------------------------------------------------------------


def json_request_body(model_cls: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI requestBody of a JSON-only endpoint (its body is read by the route, not by FastAPI)."""
    schema = {"$ref": f"#/components/schemas/{model_cls.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def inlined_schema(model_cls: type[BaseModel]) -> dict[str, Any]:
    """model_cls's JSON schema with its nested models written in place (a route's own request body
    schema cannot add entries to the document's components)."""
    schema = model_cls.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return inline(schema)


def image_request_body(model_cls: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI requestBody accepting the JSON model or the same fields as multipart with an `image` file."""
    schema = model_cls.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    form = copy.deepcopy(schema)
    form.pop("examples", None)
    form["properties"].pop("image_b64")
    schema["required"] = ["image_b64"]
    form["properties"] = {
        "image": {"type": "string", "format": "binary", "description": "The PNG or JPEG file."},
        **form["properties"],
    }
    form["required"] = ["image"]
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}, "multipart/form-data": {"schema": form}},
        }
    }
