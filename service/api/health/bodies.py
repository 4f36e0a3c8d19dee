"""The response body of the health checks."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str
    models: list[str] = Field(default_factory=list)
    model_errors: dict[str, str] = Field(
        default_factory=dict, description="Model folders that could not be loaded, and why."
    )
