"""Every error the service answers, and every exception handler of the app.

A route or the batcher raises a `ServiceError` subclass; the handlers registered here turn it (and
FastAPI's validation errors, unknown routes and anything unexpected) into an error answer. Each
error class names the `reason` label it adds to `vae_request_failures_total`. Tracebacks go to the
log, never to the client.

An error is written the way the clients of its path read errors (`error_answer`): under /v1/,
OpenAI's `{"error": {"message", "type", "param", "code"}}`, from which the `openai` SDKs raise their
typed errors; under /v2, the Open Inference Protocol's `{"error": "..."}`, which `tritonclient`
shows; everywhere else an RFC 9457 `application/problem+json` document: `type`, `title`, `status`,
`detail`, `instance`, `request_id`, plus `errors` for 422s. Neither protocol has a 422: there an
invalid field is a 400, as OpenAI's API and Triton answer it.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("service.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Problem type URIs are relative references to this service's /problems/{slug} pages.
PROBLEM_BASE = "/problems/"


class ServiceError(Exception):
    """An error with an HTTP status; the message is the problem's `detail`, shown to the user."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"
    reason: ClassVar[str] = "backend"  # label of vae_request_failures_total
    description: ClassVar[str] = "The service failed on this request; the log has the details."

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class InvalidInput(ServiceError):
    status, slug, title, reason = 422, "invalid-input", "Invalid input", "invalid"
    description = "A request field is out of range or does not fit the model; `errors` lists each one."


class InvalidImage(ServiceError):
    status, slug, title, reason = 422, "invalid-image", "Invalid image", "invalid"
    description = (
        "The image is not a PNG or JPEG, is corrupt or truncated, or has the wrong size or channels."
    )


class MalformedBody(ServiceError):
    status, slug, title, reason = 400, "malformed-body", "Malformed request body", "invalid"
    description = "The body is not valid JSON (or multipart form data) of the documented shape."


class UnsupportedMediaType(ServiceError):
    status, slug, title, reason = 415, "unsupported-media-type", "Unsupported media type", "invalid"
    description = "Send application/json, or multipart/form-data where the endpoint takes an image file."


class ModelNotFound(ServiceError):
    status, slug, title, reason = 404, "model-not-found", "Unknown model", "not_found"
    description = "No model of that name is served; GET /v1/models lists them."


class BodyTooLarge(ServiceError):
    status, slug, title, reason = 413, "body-too-large", "Request body too large", "too_large"
    description = (
        "The body is larger than its endpoint can need for the served models (GET /v1/models gives "
        "their shapes), or than the service's max_body_bytes."
    )


class BodyTooComplex(ServiceError):
    status, slug, title, reason = 413, "body-too-complex", "Request body too complex", "too_large"
    description = (
        "The JSON body nests deeper than max_json_depth or holds more than max_json_values values; "
        "no valid request comes near either."
    )


class HeadersTooLarge(ServiceError):
    status, slug, title, reason = 431, "headers-too-large", "Request headers too large", "too_large"
    description = "The request line and headers are larger than the service's max_header_bytes."


class RequestTimeout(ServiceError):
    status, slug, title, reason = 408, "request-timeout", "Request timeout", "timeout"
    description = (
        "The client did not send its headers within header_timeout_s, or its body within body_timeout_s "
        "(or the request deadline); the connection is closed."
    )


class MalformedRequest(ServiceError):
    status, slug, title, reason = 400, "malformed-request", "Malformed HTTP request", "invalid"
    description = "The bytes received are not an HTTP/1.1 request; the connection is closed."


class Unauthorized(ServiceError):
    status, slug, title, reason = 401, "unauthorized", "Unauthorized", "unauthorized"
    description = (
        "This service needs an API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`. Health "
        "checks need none."
    )


class PriorityNotAllowed(ServiceError):
    status, slug, title, reason = 403, "priority-not-allowed", "Priority not allowed", "forbidden"
    description = (
        "The request asked for a higher X-Priority than its API key may: high is for the keys the "
        "operator allows it (priority=high in the keys file)."
    )


class RateLimited(ServiceError):
    status, slug, title, reason = 429, "rate-limited", "Rate limit", "rate_limited"
    description = (
        "This API key (or client address) asked for more images than its rate allows; retry after "
        "Retry-After seconds, when its allowance has refilled enough for this request."
    )


class TooManyQueued(ServiceError):
    status, slug, title, reason = 429, "too-many-queued", "Too many images queued", "rate_limited"
    description = (
        "This API key (or client address) already has as many images waiting or computing as it "
        "may; retry after Retry-After seconds, once some of them are done."
    )


class BodyBudgetFull(ServiceError):
    status, slug, title, reason = 503, "body-budget-full", "Too many request bytes in flight", "budget"
    description = (
        "The request bodies being read and processed already fill max_body_bytes_in_flight; retry after "
        "Retry-After seconds."
    )


class TooManyConnections(ServiceError):
    status, slug, title, reason = 503, "too-many-connections", "Too many connections", "connections"
    description = "The service holds max_connections open connections; this one is closed after the answer."


class QueueFull(ServiceError):
    status, slug, title, reason = 503, "queue-full", "Queue full", "queue_full"
    description = "Too many images are waiting for this model and operation; retry after Retry-After seconds."


class NotReady(ServiceError):
    status, slug, title, reason = 503, "not-ready", "Not ready", "not_ready"
    description = "The models are still loading or warming up."


class ShuttingDown(ServiceError):
    status, slug, title, reason = 503, "shutting-down", "Shutting down", "shutting_down"
    description = "The service is draining before it stops; send the request to another replica."


class DeadlineExceeded(ServiceError):
    status, slug, title, reason = 504, "deadline-exceeded", "Deadline exceeded", "deadline"
    description = "The request's deadline passed before it was computed; it was not computed."


class OutOfMemory(ServiceError):
    status, slug, title, reason = 503, "out-of-memory", "Out of device memory", "oom"
    description = "Even a batch of one image did not fit in device memory."


class InternalError(ServiceError):
    """The model failed on this item (and only this one: the batch was split to find it)."""


class Cancelled(ServiceError):
    """The client disconnected; nobody reads the answer (status 499, as nginx logs it)."""

    status, slug, title, reason = 499, "cancelled", "Client closed request", "cancelled"
    description = "The client disconnected before the answer was ready; the work was dropped."


PROBLEM_TYPES: dict[str, type[ServiceError]] = {
    cls.slug: cls
    for cls in (
        InvalidInput, InvalidImage, MalformedBody, UnsupportedMediaType, ModelNotFound, BodyTooLarge,
        BodyTooComplex, HeadersTooLarge, RequestTimeout, MalformedRequest, Unauthorized,
        PriorityNotAllowed, RateLimited, TooManyQueued, BodyBudgetFull,
        TooManyConnections, QueueFull, NotReady, ShuttingDown, DeadlineExceeded, OutOfMemory,
        InternalError, Cancelled,
    )
}  # fmt: skip


def problem_body(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None,
    instance: str,
    request_id: str | None,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "type": PROBLEM_BASE + slug if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }
    body.update(extra)
    return body


# Where each protocol's error shape applies: OpenAI's below /v1/, the Open Inference Protocol's at
# /v2 and below it.
OPENAI_PATHS = "/v1/"
INFERENCE_PROTOCOL_PATH = "/v2"
JSON_MEDIA_TYPE = "application/json"


def uses_openai_errors(path: str) -> bool:
    return path.startswith(OPENAI_PATHS)


def uses_inference_protocol_errors(path: str) -> bool:
    return path == INFERENCE_PROTOCOL_PATH or path.startswith(INFERENCE_PROTOCOL_PATH + "/")


def field_message(errors: list[dict[str, Any]]) -> str:
    """A 422's fields and what is wrong with each, named as the request names them (without the
    problem document's leading "body")."""
    message = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'body'}: {e['msg']}" for e in errors[:3])
    return message + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else "")


def openai_error(status: int, detail: str, slug: str | None, errors: Any = None) -> dict[str, Any]:
    """OpenAI's error object: `type` by status as OpenAI's API names them, `code` the problem's slug
    (model_not_found, invalid_input, ...), `param` the first invalid field."""
    param = None
    if errors:
        param = ".".join(str(part) for part in errors[0]["loc"][1:]) or None
        detail = field_message(errors)
    if status == 401:
        kind = "authentication_error"
    elif status < 500:
        kind = "invalid_request_error"
    else:
        kind = "server_error"
    code = slug.replace("-", "_") if slug else None
    return {"error": {"message": detail, "type": kind, "param": param, "code": code}}


def error_answer(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None,
    instance: str,
    request_id: str | None,
    **extra: Any,
) -> tuple[int, str, dict[str, Any]]:
    """(status, media type, body) of an error answer on the path `instance`, in the shape its
    clients read (see the module's docstring)."""
    if uses_openai_errors(instance):
        return (
            (400 if status == 422 else status),
            JSON_MEDIA_TYPE,
            openai_error(status, detail, slug, extra.get("errors")),
        )
    if uses_inference_protocol_errors(instance):
        message = field_message(extra["errors"]) if extra.get("errors") else detail
        return (400 if status == 422 else status), JSON_MEDIA_TYPE, {"error": message}
    body = problem_body(
        status, title, detail, slug=slug, instance=instance, request_id=request_id, **extra
    )  # fmt: skip
    return status, PROBLEM_MEDIA_TYPE, body


def problem_headers(error: ServiceError) -> dict[str, str]:
    """The error's own headers; a 500 also closes the connection, whose state is then unknown."""
    return {**error.headers, "Connection": "close"} if error.status == 500 else error.headers


def problem_response(request: Request, error: ServiceError) -> JSONResponse:
    status, media_type, body = error_answer(
        error.status,
        error.title,
        error.detail,
        slug=error.slug,
        instance=request.url.path,
        request_id=getattr(request.state, "request_id", None),
        **error.extra,
    )
    return JSONResponse(body, status_code=status, headers=problem_headers(error), media_type=media_type)


def problem_bytes(
    error: ServiceError, instance: str, request_id: str | None, close: bool = False
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of an error answer, for the layers below the app (middleware,
    protocol)."""
    status, media_type, body = error_answer(
        error.status, error.title, error.detail, slug=error.slug, instance=instance,
        request_id=request_id, **error.extra,
    )  # fmt: skip
    payload = json.dumps(body).encode()
    headers = {**problem_headers(error), **({"Connection": "close"} if close else {})}
    return (
        status,
        [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(payload)).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ],
        payload,
    )


def internal_error() -> InternalError:
    """The answer to an exception nobody expected (the log has it, under the request id)."""
    return InternalError("unexpected server error; the log has the details (see request_id)")


def count_failure(request: Request, reason: str) -> None:
    if getattr(request.state, "answered", False):  # the body limit already answered and counted it
        return
    request.app.state.service.metrics.failures.labels(reason=reason).inc()


# --------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    count_failure(request, exc.reason)
    if exc.status >= 500 and not isinstance(exc, (QueueFull, NotReady, ShuttingDown)):
        log.warning("%s %s -> %d %s", request.method, request.url.path, exc.status, exc.detail)
    return problem_response(request, exc)


def validation_problem(exc: RequestValidationError) -> ServiceError:
    """FastAPI's validation errors -> 400 for unparseable JSON, else 422 with an `errors` list."""
    errors = list(exc.errors())
    for err in errors:
        if err.get("type") == "json_invalid":
            where = err.get("loc", ("body", "?"))[-1]
            why = (err.get("ctx") or {}).get("error", "invalid JSON")
            return MalformedBody(f"the request body is not valid JSON: {why} (at character {where})")
        if tuple(err.get("loc", ())) == ("body",) and err.get("type") == "model_attributes_type":
            return MalformedBody("the body must be a JSON object sent with Content-Type: application/json")
    return invalid_input(errors)


def invalid_field(field: str, msg: str, kind: str = "value_error") -> InvalidInput:
    """A 422 about one body field."""
    return invalid_input([{"loc": ["body", field], "msg": msg, "type": kind}])


def invalid_input(errors: list[dict[str, Any]]) -> InvalidInput:
    """422 with FastAPI-shaped `errors` (loc, msg, type; never the offending input, which may be huge)."""
    clean = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in errors
    ]
    shown = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in clean[:3])
    more = f" (and {len(clean) - 3} more)" if len(clean) > 3 else ""
    return InvalidInput(shown + more, errors=clean)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return await _service_error(request, validation_problem(exc))


def _status_phrase(status: int) -> str:
    """The standard reason phrase of an HTTP status ("Not Found"), or "Error" for one outside it."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Framework errors (unknown path, wrong method...) as problems of type about:blank."""
    title = _status_phrase(exc.status_code)
    detail = exc.detail if isinstance(exc.detail, str) else title
    if exc.status_code == 404:
        detail = f"no route {request.method} {request.url.path}; see /docs for the endpoints"
    status, media_type, body = error_answer(
        exc.status_code,
        title,
        detail,
        slug=None,
        instance=request.url.path,
        request_id=getattr(request.state, "request_id", None),
    )
    count_failure(request, "invalid" if exc.status_code < 500 else "backend")
    return JSONResponse(
        body, status_code=status, headers=getattr(exc, "headers", None), media_type=media_type
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """Last resort: the request tracking middleware answers unexpected errors before this sees them."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return await _service_error(request, internal_error())


def register_exception_handlers(app: FastAPI) -> None:
    """Every exception handler of the service, in one place."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
