"""The web page (plain HTML/JS, no build step) and the health check."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).with_name("static")

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}


@router.get("/")
async def page() -> FileResponse:
    """The web page (it asks for an API key and keeps it in local storage)."""
    return FileResponse(STATIC / "index.html")
