"""Reading request bodies: JSON, or multipart/form-data for the endpoints that take an image file.

/reconstruct and /encode accept the same fields either way: a JSON object with the image as base64
in `image_b64`, or a form with the file field `image` and the other fields as text (parsed as JSON
where they parse, so `0.8` and `[1, 0.5]` work). Both end in the same pydantic model, so both get
the same 422 answers. /interpolate takes its two endpoint images the same way (files `start`, `end`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request

from . import validation
from .errors import Cancelled, MalformedBody, UnsupportedMediaType, invalid_input
from .images import decode_base64


def form_value(value: str) -> Any:
    """A multipart text field: JSON when it parses (numbers, lists, null), else the plain string."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def validate(model_cls: type[BaseModel], payload: dict[str, Any]) -> Any:
    try:
        return model_cls.model_validate(payload)
    except ValidationError as e:
        raise invalid_input([{**err, "loc": ["body", *err["loc"]]} for err in e.errors()]) from None


@dataclass
class Body:
    """A request body read: the validated fields, and the files of a multipart form by field name."""

    request: Any
    uploads: dict[str, bytes]
    multipart: bool


async def read_body(request: Request, model_cls: type[BaseModel], files: tuple[str, ...]) -> Body:
    """A JSON object, or multipart/form-data whose parts named in `files` may be files, validated
    with model_cls (a multipart form's text fields parsed as JSON where they parse)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "multipart/form-data":
            try:
                form = await request.form(max_files=len(files), max_fields=32)
            except MultiPartException as e:
                raise MalformedBody(f"the multipart body could not be parsed: {e.message}") from None
            uploads, fields = {}, {}
            for k, v in form.multi_items():
                if isinstance(v, UploadFile):
                    if k in files:
                        uploads[k] = await v.read()
                else:
                    fields[k] = form_value(v)
            return Body(validate(model_cls, fields), uploads, multipart=True)
        if content_type in ("", "application/json") or content_type.endswith("+json"):
            raw = await request.body()
        else:
            names = " or ".join(repr(f) for f in files)
            raise UnsupportedMediaType(
                f"unsupported Content-Type {content_type!r}: send application/json, or "
                f"multipart/form-data with the file field {names}"
            )
    except ClientDisconnect:
        raise Cancelled("the client disconnected while sending the body") from None
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise MalformedBody(f"the request body is not valid JSON: {e}") from None
    if not isinstance(payload, dict):
        raise MalformedBody(f"the request body must be a JSON object, got {type(payload).__name__}")
    return Body(validate(model_cls, payload), {}, multipart=False)


async def read_image_request(request: Request, model_cls: type[BaseModel]) -> tuple[Any, bytes]:
    """A JSON body with image_b64, or multipart/form-data with the file field `image` and the same
    other fields -> (validated request, image bytes)."""
    body = await read_body(request, model_cls, files=("image",))
    req = body.request
    if body.multipart:
        if "image" not in body.uploads:
            raise validation.invalid(
                "image", "a multipart request needs the image as a file field named 'image'"
            )
        if req.image_b64 is not None:
            raise validation.invalid("image_b64", "send the image once: as the file 'image' or as image_b64")
        return req, body.uploads["image"]
    if req.image_b64 is None:
        raise validation.invalid(
            "image_b64",
            "send the image as base64 in image_b64, or as multipart/form-data with the file field 'image'",
        )
    return req, decode_base64(req.image_b64)
