"""The client's errors: what the service answered (APIError, with its RFC 9457 problem, or the
OpenAI-shaped error of the /v1/ paths), or that it did not answer (ConnectionFailed)."""

from __future__ import annotations

from typing import Any

import httpx


class ClientError(Exception):
    """Every error of the client; str() is a sentence a user can act on."""


class APIError(ClientError):
    """The service answered with an error: its problem document (RFC 9457)."""

    def __init__(self, status: int, title: str, detail: str, **problem: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.type: str = problem.get("type", "about:blank")
        self.request_id: str | None = problem.get("request_id")
        self.errors: list[dict[str, Any]] = problem.get("errors") or []  # 422: one entry per bad field
        self.problem = problem

    @classmethod
    def from_response(cls, r: httpx.Response) -> APIError:
        try:
            body = r.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("detail"), str):
            extra = {k: v for k, v in body.items() if k not in ("status", "title", "detail")}
            return cls(r.status_code, str(body.get("title", r.reason_phrase)), body["detail"], **extra)
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):  # /v1/: OpenAI's shape
            return cls(r.status_code, r.reason_phrase, error["message"], **error)
        text = " ".join(r.text.split())[:200]  # not a problem document: a proxy's page, say
        detail = f"HTTP {r.status_code} {r.reason_phrase} from {r.request.url}" + (
            f": {text}" if text else ""
        )
        return cls(r.status_code, r.reason_phrase, detail)

    @property
    def bad_input(self) -> bool:
        """The request was at fault (4xx), not the service (5xx) nor its limits (429: the same
        request would do later)."""
        return self.status < 500 and self.status != 429


class ConnectionFailed(ClientError):
    """No answer: the service could not be reached, or the connection failed or timed out."""
