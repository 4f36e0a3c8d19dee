"""The published OpenAPI schema, with the bounds the service enforces, and the request-body entries
of the model endpoints (which read their own bodies, so FastAPI cannot document them itself).

The pydantic models (the families' bodies.py) hold what is true of every deployment; the rest depends
on the settings and on the models served: the most images a request may ask for, the temperature and
guidance ranges, the model names, the labels (indices and class names), image sizes and latent
layers of each model. This module writes those into the schema, so that a client generated from it,
or a property-based test, sends what the service accepts: a bound is the one inputs/validation.py
enforces (the loosest over the served models where they differ, each model's listed in the
description). What a schema cannot say, because it depends on the model a request names or on
another field (a temperature list has one value per layer of that model, an upload is an image of
its size, guidance needs a label), the descriptions say in words. The schema is cached once the
models are loaded; before that it is built without per-model bounds on each request.

The request bodies are written into the document as the routes declare them: FastAPI's own OpenAPI
model holds numbers as floats, which turns the largest seed (2**63 - 1) into a larger one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import BaseRoute

from model.classes import label_pattern

from ..inputs.fields import MAX_CLASS_NAME
from ..registry import ServedCascade, ServedModel
from ..state import Phase, ServiceState

# No key needed, even when keys are on.
OPEN_OPERATIONS = ("/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready")
# A family's own bounds (the names its paths take), written after the shared ones.
BoundsWriter = Callable[[dict[str, Any], ServiceState], None]
MODEL_DEPENDENT = (
    "Some limits depend on the model a request names (GET /v1/models), so a request within the bounds "
    "here can still be refused for it: its classes (label, prompt), its latent layers (a temperature "
    "list has one value per layer; layers, latents), the size and channels of its images (an upload is "
    "a PNG or JPEG of that size), its latent shapes (latents), whether it is a cascade (stages), "
    "class-conditional (label, guidance) or a super-resolution model (upscale only). Across fields: "
    "guidance needs a label, seed + n - 1 is at most the largest seed, and latents are the top layers "
    "in order (entry i is layer i)."
)


def install_openapi(
    app: FastAPI,
    state: ServiceState,
    keys_required: bool,
    request_bodies: Sequence[type[BaseModel]],
    family_bounds: Sequence[BoundsWriter] = (),
) -> None:
    """Replace app.openapi with the schema built here. request_bodies: the request models the routes'
    request-body entries name by reference (json_request_body, image_request_body), in the order
    their schemas join the document's components; family_bounds: the families' own bounds."""

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
        write_request_bodies(schema, app.routes)
        write_bounds(schema, state)
        for write in family_bounds:
            write(schema, state)
        if keys_required:
            require_keys(schema)
        if state.phase is Phase.READY:
            app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def write_request_bodies(schema: dict[str, Any], routes: Sequence[BaseRoute]) -> None:
    """Each route's declared requestBody, as declared (exact integers)."""
    pending = list(routes)
    while pending:
        route = pending.pop()
        inner = getattr(route, "original_router", None)
        if inner is not None:
            pending.extend(inner.routes)
        elif (
            isinstance(route, APIRoute)
            and route.include_in_schema
            and "requestBody" in (route.openapi_extra or {})
        ):
            for method in route.methods:
                operation = schema["paths"][route.path_format][method.lower()]
                operation["requestBody"] = copy.deepcopy(route.openapi_extra["requestBody"])


def _typed(prop: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The parts of a property schema of JSON type `kind` (itself, or its anyOf branches)."""
    return [s for s in (prop, *prop.get("anyOf", ())) if s.get("type") == kind]


def _request_schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object schema a request body is validated against: the request bodies' own schemas and
    the components they refer to, however deep (a response's components are left alone)."""
    components = schema["components"]["schemas"]
    found: dict[int, dict[str, Any]] = {}
    pending = [
        content["schema"]
        for operations in schema["paths"].values()
        for operation in operations.values()
        for content in operation.get("requestBody", {}).get("content", {}).values()
        if "schema" in content
    ]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/components/schemas/"):
                node = components[ref.rsplit("/", 1)[1]]
            if id(node) in found:
                continue
            if "properties" in node:
                found[id(node)] = node
            pending.extend(v for k, v in node.items() if k != "$ref")
    return list(found.values())


def has_file(obj: dict[str, Any]) -> bool:
    """Whether a form's schema has a file field."""
    return any(
        s.get("format") == "binary" for p in obj["properties"].values() for s in (p, *p.get("anyOf", ()))
    )


def label_range(m: ServedModel) -> str:
    names = " or a class name (GET /v1/models: classes)" if m.vae.classes is not None else ""
    return f"labels 0..{m.hp.num_classes - 1}{names}"


def class_label_schema(models: Sequence[ServedModel]) -> dict[str, Any] | None:
    """The component every label text and prompt refers to: the texts that name a class of a served
    model (model.classes.label_pattern), or None when no model is class-conditional."""
    patterns = sorted({label_pattern(m.vae.classes, m.hp.num_classes) for m in models if m.hp.conditional})
    if not patterns:
        return None
    return {
        "type": "string",
        "pattern": "|".join(f"(?:{p})" for p in patterns),
        "description": "A class of a served model: one of its names, in any case, or its index in ASCII "
        "digits, with any whitespace around it.",
    }


def image_sizes(state: ServiceState) -> list[str]:
    """The WIDTHxHEIGHT of what each model and cascade that samples draws."""
    registry = state.registry
    found: list[ServedModel | ServedCascade] = [*registry.models.values(), *registry.cascades.values()]
    last = [m.stages[-1] if isinstance(m, ServedCascade) else m for m in found]
    return sorted({f"{m.hp.image_size}x{m.hp.image_size}" for m in last if not m.hp.low_res})


def write_bounds(schema: dict[str, Any], state: ServiceState) -> None:
    settings = state.settings
    models = list(state.registry.models.values())
    names = [*state.registry.models, *state.registry.cascades]
    layers = sorted({m.num_layers for m in models})
    bases = [*models, *(c.stages[0] for c in state.registry.cascades.values())]
    classes = [m.hp.num_classes for m in bases if m.hp.conditional]
    per_model = "; ".join(
        f"{m.name}: {label_range(m) if m.hp.conditional else 'unconditional'}, "
        f"{m.num_layers} latent layers, {m.hp.image_size}x{m.hp.image_size}x{m.hp.image_channels} images"
        for m in models
    )
    components = schema["components"]["schemas"]
    class_label = class_label_schema(bases)
    if class_label is not None:
        components["ClassLabel"] = class_label
    temperature = {"minimum": settings.min_temperature, "maximum": settings.max_temperature}
    for obj in _request_schemas(schema):
        props = obj["properties"]
        if per_model and "model" in props:
            description = f"{obj.get('description', '')}\n\nPer model: {per_model}.\n\n{MODEL_DEPENDENT}"
            obj["description"] = description.strip()
        if names and "model" in props:
            for p in _typed(props["model"], "string"):
                p["enum"] = names
        if "prompt" in props:
            empty = {"pattern": r"^\s*$"}
            label = {"$ref": "#/components/schemas/ClassLabel"}
            props["prompt"]["anyOf"] = [empty, label] if class_label is not None else [empty]
        if "size" in props and names:
            for p in _typed(props["size"], "string"):
                p.pop("pattern", None)
                p["enum"] = ["auto", *image_sizes(state)]
        for name in ("n", "steps"):  # images a request asks for (steps: /interpolate's)
            if name in props:
                for p in _typed(props[name], "integer"):
                    p["maximum"] = min(p.get("maximum", math.inf), settings.max_images_per_request)
                if isinstance(props[name].get("default"), int):  # a default is within the limit
                    props[name]["default"] = min(props[name]["default"], settings.max_images_per_request)
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
            for p in _typed(props["label"], "string"):
                p.clear()
                p.update(
                    type="string",
                    maxLength=MAX_CLASS_NAME,
                    allOf=[{"$ref": "#/components/schemas/ClassLabel"}],
                )
        for name in ("guidance", "guidance_scale"):
            for p in _typed(props.get(name, {}), "number"):  # one weight for the mean and the variance
                p["maximum"] = settings.max_guidance
            # Guidance needs a label: none with the null label. A form's schema says it in words:
            # schemathesis cannot test a condition on a form that carries a file.
            if name in props and "label" in props and not has_file(obj):
                obj["if"] = {"properties": {"label": {"type": "null"}}, "required": ["label"]}
                obj["then"] = {"properties": {name: {"type": "null"}}}
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
    if names:
        for operation in schema["paths"].get("/v1/models/{name}", {}).values():
            for parameter in operation.get("parameters", ()):
                if parameter["name"] == "name":
                    parameter["schema"]["enum"] = names


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
    """OpenAPI requestBody accepting the JSON model (its component, by reference: a request model of
    install_openapi) with its image required, or the same fields as multipart with an `image` file."""
    form = model_cls.model_json_schema(ref_template="#/components/schemas/{model}")
    form.pop("$defs", None)
    examples = form.pop("examples", None)
    image_b64 = {
        "type": "string",
        "description": "The image as base64 PNG or JPEG of the model's size and channels (a data: URL prefix "
        "is allowed).",
    }
    schema = {
        "allOf": [{"$ref": f"#/components/schemas/{model_cls.__name__}"}],
        "properties": {"image_b64": image_b64},
        "required": ["image_b64"],
        **({"examples": examples} if examples else {}),
    }
    form["properties"].pop("image_b64")
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
