"""Hyperparameter strings: the official block strings, per-resolution widths and attention blocks.

Each parser names the bad token in its error, so a typo fails at construction with a message that
says what would be accepted, not later as a shape error.
"""

from __future__ import annotations

import re


class HParamsError(ValueError):
    """An invalid hyperparameter: the message names the field and the offending token."""


# --------------------------------------------------------------------------------------------
# Block strings and widths
# --------------------------------------------------------------------------------------------


def parse_layer_string(s: str, field_name: str = "blocks") -> list[tuple[int, int | None]]:
    """Parse an official block string such as ``"32x11,32d2,16m8,1"``.

    Returns one ``(resolution, k)`` pair per block. ``RxN`` gives N plain blocks, ``RmM`` and
    ``RdK`` give ``(R, M)``/``(R, K)``: the official parser treats ``m`` and ``d`` alike and lets the
    caller decide (the encoder reads a down-sampling rate, the decoder a mixin resolution).
    """
    if not isinstance(s, str) or not s.strip():
        raise HParamsError(f"{field_name} is empty: expected tokens like '32x4,32d2,16x2'")
    layers: list[tuple[int, int | None]] = []
    for token in s.split(","):
        tok = token.strip()
        try:
            if "x" in tok:
                res, count = (int(a) for a in tok.split("x"))
                if count < 1:
                    raise ValueError
                layers += [(res, None)] * count
            elif "m" in tok or "d" in tok:
                res, k = (int(a) for a in tok.replace("m", "d").split("d"))
                if k < 1:
                    raise ValueError
                layers.append((res, k))
            else:
                res = int(tok)
                layers.append((res, None))
        except ValueError:
            raise HParamsError(
                f"{field_name}: bad token {token!r} in {s!r}; expected 'RxN' (N blocks at resolution R), "
                "'RdK' (block then down-sample by K), 'RmM' (mixin from resolution M) or 'R'"
            ) from None
        if res < 1:
            raise HParamsError(f"{field_name}: bad token {token!r} in {s!r}; resolution must be >= 1")
    return layers


def parse_widths(width: int, custom_width_str: str) -> dict[int, int]:
    """Explicit per-resolution widths from ``"res:width,..."``; other resolutions use `width`."""
    mapping: dict[int, int] = {}
    if not custom_width_str:
        return mapping
    for token in custom_width_str.split(","):
        try:
            res, w = (int(a) for a in token.strip().split(":"))
        except ValueError:
            raise HParamsError(
                f"custom_width_str: bad token {token!r} in {custom_width_str!r}; expected 'res:width'"
            ) from None
        if res < 1 or w < 1:
            raise HParamsError(
                f"custom_width_str: bad token {token!r}; resolution and width must be positive"
            )
        mapping[res] = w
    return mapping


def parse_attention(s: str) -> list[tuple[str, int, int]]:
    """Attention blocks from ``"R,RxN,..."``: (token, resolution, count) each; "" is none."""
    out: list[tuple[str, int, int]] = []
    for token in s.split(",") if s.strip() else []:
        m = re.fullmatch(r"\s*(\d+)(?:x(\d+))?\s*", token)
        if not m or int(m[1]) < 1 or (m[2] is not None and int(m[2]) < 1):
            raise HParamsError(
                f"attention: bad token {token!r} in {s!r}; expected 'R' (one attention block at "
                "resolution R) or 'RxN' (N blocks), e.g. '16,8x2'"
            )
        if any(res == int(m[1]) for _, res, _ in out):
            raise HParamsError(f"attention: resolution {m[1]} appears twice in {s!r}")
        out.append((token.strip(), int(m[1]), int(m[2] or 1)))
    return out


def evenly_spaced(count: int, among: int) -> list[int]:
    """Indices of `count` of `among` blocks, spread evenly and ending with the last one (count 1:
    the last block; count == among: every block)."""
    return [((j + 1) * among) // count - 1 for j in range(count)]
