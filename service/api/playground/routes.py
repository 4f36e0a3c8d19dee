"""The playground: a page served at / and /playground from the static files beside this module.

Plain HTML, CSS and JavaScript modules, no build step and nothing fetched from elsewhere (it works
on an offline machine); the page uses only the public HTTP API, as any client would. The page is
sent with a Content-Security-Policy that allows nothing but this service.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

# Scripts, styles and fetches from this origin only; images may also be data: and blob: URLs (the
# answers' base64 PNGs, drawings and uploads).
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/")
@router.get("/playground")
async def playground() -> FileResponse:
    return FileResponse(
        STATIC / "index.html", headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
    )


def install(app: FastAPI) -> None:
    """The page's routes, and its files under /static."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
