"""Helpers for the model tests: where the fixtures computed by the official code live."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
