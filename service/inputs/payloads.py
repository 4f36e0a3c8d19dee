"""A body's bytes -> its validated request model: JSON, or multipart/form-data for the endpoints that
take an image file. Plain functions of the body's bytes, so that they can run off the event loop
(parsing.py decides where).

/reconstruct and /encode accept the same fields either way: a JSON object with the image as base64
in `image_b64`, or a form with the file field `image` and the other fields as text (parsed as JSON
where they parse, so `0.8` and `[1, 0.5]` work). Both end in the same pydantic model, so both get
the same 422 answers. /interpolate takes its two endpoint images the same way (files `start`, `end`).

Cheap caps come first, in C-speed byte counts: a body with more JSON values than max_json_values or
nested deeper than max_json_depth is refused (413) before it is parsed, so no body makes the parser
or the validators work long. Uploads stay in memory (the body limit bounds them; a read-only root
has nowhere to spool them).
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import numpy as np
import pydantic_core
from pydantic import BaseModel, ValidationError
from python_multipart.multipart import Field, File, FormParser, parse_options_header

from ..errors import BodyTooComplex, MalformedBody, UnsupportedMediaType, invalid_field, invalid_input
from ..settings import Settings
from .uploads import decode_base64

ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_FORM_FIELDS = 32
# A JSON string, escapes included (unrolled, so it runs in linear time).
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 for an opening one, -1 (int8) closing


def json_depth(raw: bytes) -> int:
    """How deep the JSON text nests (brackets inside strings do not count)."""
    brackets = JSON_STRING.sub(b"", raw).translate(None, NOT_BRACKETS)
    steps = np.frombuffer(brackets.translate(BRACKET_STEPS), dtype=np.int8)
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def check_json_shape(
    raw: bytes, settings: Settings, what: str = "the JSON body", max_values: int | None = None
) -> None:
    """BodyTooComplex unless `raw` holds at most max_values values (default: max_json_values)
    nested at most max_json_depth."""
    containers = raw.count(b"[") + raw.count(b"{")
    values = raw.count(b",") + containers
    limit = settings.max_json_values if max_values is None else max_values
    if values > limit:
        raise BodyTooComplex(
            f"{what} holds about {values} values; the limit is {limit} (a temperature list has one per "
            "latent layer)"
        )
    if containers > settings.max_json_depth and json_depth(raw) > settings.max_json_depth:
        raise BodyTooComplex(f"{what} nests deeper than the limit of {settings.max_json_depth} levels")


def validate(model_cls: type[ModelT], payload: dict[str, Any]) -> ModelT:
    try:
        return model_cls.model_validate(payload)
    except ValidationError as e:
        raise invalid_input([{**err, "loc": ["body", *err["loc"]]} for err in e.errors()]) from None


def media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def is_json(content_type: str) -> bool:
    media = media_type(content_type)
    return media in ("", "application/json") or media.endswith("+json")


def json_body(
    raw: bytes, content_type: str, model_cls: type[ModelT], settings: Settings, max_values: int | None = None
) -> ModelT:
    """A JSON object body -> the validated model (strict: no "8" for 8, no false for 0).
    max_values: the most JSON values it may hold (default: the settings' max_json_values)."""
    if not is_json(content_type):
        raise UnsupportedMediaType(
            f"unsupported Content-Type {media_type(content_type)!r}: send application/json"
        )
    check_json_shape(raw, settings, max_values=max_values)
    try:
        return model_cls.model_validate_json(raw)
    except ValidationError as e:
        errors = e.errors()
        if errors and errors[0]["type"] == "json_invalid":
            why = errors[0]["ctx"].get("error", "invalid JSON") if errors[0].get("ctx") else "invalid JSON"
            raise MalformedBody(f"the request body is not valid JSON: {why}") from None
        if errors and errors[0]["type"] == "model_type" and not errors[0]["loc"]:
            raise MalformedBody("the request body must be a JSON object") from None
        raise invalid_input([{**err, "loc": ["body", *err["loc"]]} for err in errors]) from None


def form_value(value: str, settings: Settings) -> Any:
    """A multipart text field: JSON when it parses (numbers, lists, null), else the plain string."""
    check_json_shape(value.encode(), settings, what="a form field")
    try:
        return pydantic_core.from_json(value)
    except ValueError:
        return value


def is_json_text(value: bytes) -> bool:
    try:
        pydantic_core.from_json(value)
    except ValueError:
        return False
    return True


def multipart_form(
    raw: bytes, content_type: str, files: tuple[str, ...] = ("image",)
) -> tuple[dict[str, str], dict[str, bytes]]:
    """multipart/form-data -> (text fields, the bytes of each file field named in `files`), held in
    memory; a file field sent twice is refused. A part named in `files` is its file whether or not
    it has a filename (`curl -F image=<digit.png` sends none), unless it holds JSON text (/interpolate's
    ends may be a seed)."""
    _, options = parse_options_header(content_type)
    fields: dict[str, str] = {}
    uploads: dict[str, bytes] = {}
    parts = 0

    def count_part() -> None:
        nonlocal parts
        parts += 1
        if parts > MAX_FORM_FIELDS:
            raise MalformedBody(f"the form has more than {MAX_FORM_FIELDS} fields")

    def upload(name: str, data: bytes) -> None:
        if name in uploads:
            raise MalformedBody(f"the form has more than one file {name!r}; send it once")
        uploads[name] = data

    def on_field(field: Field) -> None:
        count_part()
        name, value = field.field_name.decode("utf-8", "replace"), field.value or b""
        if name in files and not is_json_text(value):
            upload(name, value)
        else:
            fields[name] = value.decode("utf-8", "replace")

    def on_file(file: File) -> None:
        count_part()
        name = (file.field_name or b"").decode("utf-8", "replace")
        if name in files:
            upload(name, file.file_object.getvalue())

    boundary = options.get(b"boundary")
    try:
        if not boundary:
            raise MalformedBody("the multipart Content-Type has no boundary")
        config = {"MAX_MEMORY_FILE_SIZE": len(raw) + 1, "MAX_HEADER_COUNT": 8}
        parser = FormParser("multipart/form-data", on_field, on_file, boundary=boundary, config=config)
        parser.write(raw)
        parser.finalize()
    except MalformedBody:
        raise
    except Exception as e:  # python-multipart's parse errors
        raise MalformedBody(f"the multipart body could not be parsed: {e}") from None
    return fields, uploads


def form_or_json_body(
    raw: bytes, content_type: str, model_cls: type[ModelT], settings: Settings, files: tuple[str, ...]
) -> tuple[ModelT, dict[str, bytes]]:
    """A JSON object, or multipart/form-data whose parts named in `files` may be files -> (the
    validated request, the uploaded files by field name)."""
    if media_type(content_type) == "multipart/form-data":
        fields, uploads = multipart_form(raw, content_type, files)
        return validate(model_cls, {k: form_value(v, settings) for k, v in fields.items()}), uploads
    if not is_json(content_type):
        names = " or ".join(repr(f) for f in files)
        raise UnsupportedMediaType(
            f"unsupported Content-Type {media_type(content_type)!r}: send application/json, or "
            f"multipart/form-data with the file field {names}"
        )
    return json_body(raw, content_type, model_cls, settings), {}


def image_body(
    raw: bytes, content_type: str, model_cls: type[ModelT], settings: Settings
) -> tuple[ModelT, bytes]:
    """A JSON body with image_b64, or multipart/form-data with the file field `image` and the same
    other fields -> (validated request, image bytes)."""
    req, uploads = form_or_json_body(raw, content_type, model_cls, settings, files=("image",))
    if media_type(content_type) == "multipart/form-data":
        if "image" not in uploads:
            raise invalid_field("image", "a multipart request needs the image as a file field named 'image'")
        if req.image_b64 is not None:  # type: ignore[attr-defined]
            raise invalid_field("image_b64", "send the image once: as the file 'image' or as image_b64")
        return req, uploads["image"]
    if req.image_b64 is None:  # type: ignore[attr-defined]
        raise invalid_field(
            "image_b64",
            "send the image as base64 in image_b64, or as multipart/form-data with the file field 'image'",
        )
    return req, decode_base64(req.image_b64)  # type: ignore[attr-defined]
