"""The back office's customer import from CSV: upload, preview, import, and a report of rejected rows.

The uploaded file is checked at once and its rows kept in accounts' database under a random id
(`customer_imports`); the preview and the confirmation name that id, so nothing the browser sends
back is trusted as a row. Each accepted row is added through `customers.add_customer`, exactly as a
customer added by hand. Importing grants offers, which only the owner may give away: every route
here is the owner's.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from starlette.datastructures import UploadFile

from postsale.accounts import customer_imports as imports
from postsale.accounts.entrypoints.staff_pages import templates
from postsale.runtime.csrf import require_csrf
from postsale.runtime.backoffice import page_number, page_of_list
from postsale.runtime.db import SessionDep
from postsale.runtime.staff import OwnerDep, backoffice_context

pages = APIRouter(prefix="/admin", include_in_schema=False)
UPLOAD_PATH = "/admin/customers/import"
MAX_REQUEST_BYTES = imports.MAX_FILE_BYTES + 64 * 1024  # the file, its multipart framing and the token
# accounts' form-size guard (app.py) lets the upload through up to this; `_upload_size` answers below it.
FORM_LIMITS = {UPLOAD_PATH: 16 * imports.MAX_FILE_BYTES}
TOO_LARGE = (f"The file is larger than {imports.MAX_FILE_BYTES // 1_000_000} MB, so it was not read. Split it into "
             f"files of at most {imports.MAX_ROWS:,} customers and import them one after the other.")


def _upload_page(request: Request, session: Session, owner, *, error: str | None = None,
                 status_code: int = 200) -> Response:
    return templates.TemplateResponse(request, "backoffice/import.html", {
        **backoffice_context(request, owner, "Customers"), "error": error, "recent": imports.recent(session),
        "columns": imports.COLUMNS, "max_rows": imports.MAX_ROWS, "max_mb": imports.MAX_FILE_BYTES // 1_000_000,
        "max_offers": imports.MAX_OFFERS,
    }, status_code=status_code)


def _upload_size(request: Request) -> None:
    """Refuses a file too large before its body is read (the upload itself is read by the CSRF check)."""
    length = request.headers.get("content-length", "")
    if not (length.isascii() and length.isdigit()):
        raise HTTPException(status_code=411, detail="Upload the file from the import page: the upload did not "
                                                    "say its size, so it was not read.")
    if int(length) > MAX_REQUEST_BYTES:
        raise HTTPException(status_code=413, detail=TOO_LARGE)


@pages.get("/customers/import", response_class=HTMLResponse)
def import_page(request: Request, session: SessionDep, owner: OwnerDep):
    """The upload form, the file's format, and the latest imports."""
    return _upload_page(request, session, owner)


@pages.post("/customers/import", response_class=HTMLResponse,
            dependencies=[Depends(_upload_size), Depends(require_csrf)])
async def upload(request: Request, session: SessionDep, owner: OwnerDep):
    """Checks the file and shows what would be imported; nobody is added yet."""
    upload = (await request.form()).get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return await run_in_threadpool(_upload_page, request, session, owner, status_code=422,
                                       error="Choose a CSV file to upload.")
    data = await upload.read(imports.MAX_FILE_BYTES + 1)

    def start() -> Response:
        try:
            batch = imports.start_import(session, staff_id=owner.staff_id, file_name=upload.filename or "",
                                         data=data)
        except imports.ImportRefused as exc:
            session.rollback()
            return _upload_page(request, session, owner, error=f"Nothing was imported. {exc}", status_code=422)
        session.commit()
        return RedirectResponse(f"{UPLOAD_PATH}/{batch.id}", status_code=303)

    return await run_in_threadpool(start)


def _batch(request: Request, session: Session, import_id: str):
    batch = imports.find(session, import_id)
    if batch is None:
        raise HTTPException(status_code=404, detail="There is no such import: previews and reports are deleted "
                                                    f"after {imports.KEPT_FOR.days} days. Upload the file again.")
    return batch


def _batch_page(request: Request, session: Session, owner, batch, *, page: str = "1", rejected_page: str = "1",
                done: bool = False, error: str | None = None, status_code: int = 200) -> Response:
    accepted, rejected = json.loads(batch.accepted), json.loads(batch.rejected)
    shown, number, more = page_of_list(accepted, page_number(page))
    shown_rejected, rejected_number, more_rejected = page_of_list(rejected, page_number(rejected_page))
    base = f"{UPLOAD_PATH}/{batch.id}"

    def url(**query) -> str:
        return f"{base}?{urlencode({'page': number, 'rejected_page': rejected_number, **query})}"

    return templates.TemplateResponse(request, "backoffice/import_batch.html", {
        **backoffice_context(request, owner, "Customers"), "batch": batch, "done": done, "error": error,
        "accepted": shown, "accepted_count": len(accepted), "rejected": shown_rejected,
        "rejected_count": len(rejected), "offers_count": sum(1 for row in accepted if row["offer_ids"]),
        "previous_url": url(page=number - 1) + "#accepted" if number > 1 else None,
        "next_url": url(page=number + 1) + "#accepted" if more else None,
        "previous_rejected_url": url(rejected_page=rejected_number - 1) + "#rejected" if rejected_number > 1 else None,
        "next_rejected_url": url(rejected_page=rejected_number + 1) + "#rejected" if more_rejected else None,
        "rejected_csv_url": f"{base}/rejected.csv", "confirm_url": f"{base}/confirm",
    }, status_code=status_code)


@pages.get("/customers/import/{import_id}", response_class=HTMLResponse)
def import_batch(import_id: str, request: Request, session: SessionDep, owner: OwnerDep, page: str = "1",
                 rejected_page: str = "1", done: str = ""):
    """Before the confirmation, the preview: the rows to import and the rows rejected, each with
    its reason. After it, the report."""
    return _batch_page(request, session, owner, _batch(request, session, import_id), page=page,
                       rejected_page=rejected_page, done=done == "imported")


@pages.post("/customers/import/{import_id}/confirm", response_class=HTMLResponse,
            dependencies=[Depends(require_csrf)])
def confirm_import(import_id: str, request: Request, session: SessionDep, owner: OwnerDep):
    """Adds every accepted row as a customer (welcome email, offers granted by checkout)."""
    batch = _batch(request, session, import_id)
    try:
        imports.run_import(session, batch.id)
        session.commit()
    except imports.AlreadyImported:
        session.rollback()
    except IntegrityError:  # one of these emails was added at the same moment: nothing is kept
        session.rollback()
        return _batch_page(request, session, owner, _batch(request, session, import_id), status_code=409,
                           error="A customer with one of these emails was added at the same moment, so nothing "
                                 "was imported. Press the button again: that customer will be set aside.")
    return RedirectResponse(f"{UPLOAD_PATH}/{batch.id}?done=imported", status_code=303)


@pages.get("/customers/import/{import_id}/rejected.csv")
def rejected_rows(import_id: str, request: Request, session: SessionDep, owner: OwnerDep) -> Response:
    """The rejected rows with their reasons, to fix in a spreadsheet and upload again."""
    batch = _batch(request, session, import_id)
    return Response(imports.rejected_csv(batch), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="rejected-customers.csv"'})
