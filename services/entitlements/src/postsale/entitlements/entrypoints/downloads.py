"""Downloads: a click in the library makes a fresh link; a link (from the library or the delivery
email) sends the file while it works, and otherwise says why, with the way to the library."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from postsale.entitlements import activity
from postsale.entitlements.delivery import download
from postsale.entitlements.entrypoints.fields import no_nul_in_path
from postsale.runtime.activity import throttle_of
from postsale.runtime.auth import CustomerSession, current_customer
from postsale.runtime.clock import utcnow
from postsale.runtime.csrf import require_csrf
from postsale.runtime.db import SessionDep
from postsale.runtime.web import templates_for

templates = templates_for(Path(__file__).parents[1] / "templates")
router = APIRouter(tags=["customer"], dependencies=[Depends(no_nul_in_path)])
CustomerDep = Annotated[CustomerSession | None, Depends(current_customer)]


def _refused(request: Request, status: int, code: str, title: str, message: str) -> HTMLResponse:
    return templates.TemplateResponse(request, "download_refused.html", {
        "code": code, "title": title, "message": message, "library_url": request.app.state.urls.library_url},
        status_code=status)


def _refusal(request: Request, exc: Exception) -> HTMLResponse:
    if isinstance(exc, download.LinkExpired):
        return _refused(request, 410, "expired", "This link expired",
                        "Download links work for a short while only. Here is your library: "
                        "each click there makes a fresh link.")
    if isinstance(exc, download.AccessEnded):
        if exc.on_hold:
            return _refused(request, 403, "on_hold", "This download is on hold",
                            f"Access to this product is on hold ({exc.reason}).")
        return _refused(request, 403, "ended", "Access to this download has ended",
                        f"Access to this product has ended ({exc.reason}).")
    if isinstance(exc, download.LimitReached):
        return _refused(request, 403, "limit", "No downloads left",
                        f"This product may be downloaded {exc.limit} times, and all of them are used.")
    return _refused(request, 404, "unknown", "This link does not work",
                    "It may have been mistyped or belong to a file that was removed.")


@router.post("/library/downloads/{grant_id}/{file_id}", response_class=HTMLResponse,
             dependencies=[Depends(require_csrf)])
def download_from_library(grant_id: str, file_id: str, request: Request, session: SessionDep,
                          customer: CustomerDep):
    """The library's download button: a fresh short-lived link to the file, followed at once."""
    if customer is None:
        return RedirectResponse(request.app.state.urls.login_url(next_url=request.app.state.urls.library_url),
                                status_code=303)
    lifetime = timedelta(minutes=request.app.state.delivery_settings.library_link_minutes)
    try:
        token = download.link_for_library(session, customer_id=customer.customer_id, grant_id=grant_id,
                                          file_id=file_id, now=utcnow(), lifetime=lifetime)
    except (download.LinkUnknown, download.UnknownFile, download.AccessEnded, download.LimitReached) as exc:
        return _refusal(request, exc)
    session.commit()
    return RedirectResponse(f"/downloads/{token}", status_code=303)


@router.get("/downloads/{token}", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "The file."}})
def fetch(token: str, request: Request, session: SessionDep):
    """The file behind a download link, counted against the grant's limit; or a page saying the link
    expired (with the way to the library), access ended or is on hold, or no downloads are left."""
    now = utcnow()
    try:
        opened = download.open_link(session, token[:200], now=now,
                                    client=request.client.host if request.client else None)
        chunks = request.app.state.storage.open(opened.file.storage_key)
    except (download.LinkUnknown, download.LinkExpired, download.AccessEnded, download.LimitReached) as exc:
        session.rollback()
        return _refusal(request, exc)
    except FileNotFoundError:
        session.rollback()
        return _refusal(request, download.LinkUnknown(token[:8]))
    # Whoever holds the link downloads on the grant's customer's behalf (the email's link included).
    activity.content_opened(session, throttle_of(request), customer_id=opened.customer_id, kind="download",
                            product_id=opened.product_id, file_name=opened.file.name, now=now)
    session.commit()
    headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(opened.file.name)}",
               "Content-Length": str(opened.file.size), "Cache-Control": "no-store",
               "X-Content-Type-Options": "nosniff"}
    if opened.downloads_left is not None:
        headers["X-Downloads-Left"] = str(opened.downloads_left)
    return StreamingResponse(chunks, media_type=opened.file.content_type, headers=headers)
