"""A file uploaded from the back office's upload form: streamed to storage as it arrives, with the
admin API's parser (`uploads.py`) and size limit, so it is never whole in memory nor in a temporary
file.

The route cannot take `require_csrf`, which reads the whole form before the route runs. The form
puts its CSRF token and its one-time submission token before the file instead (a browser sends
fields in the form's order), and the parser checks them before storing a byte of the file: a forged
form stores nothing, and the same form posted twice records one file.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from python_multipart.multipart import parse_options_header

from postsale.entitlements.adapters.storage import FileStorage
from postsale.entitlements.adapters.tables import ProductFile
from postsale.entitlements.delivery import download
from postsale.entitlements.entrypoints.admin_delivery import _check_download_product, _record_file
from postsale.entitlements.entrypoints.backoffice_forms import readable_size
from postsale.entitlements.entrypoints.uploads import FIELD, BadUpload, StreamedFile, UploadTooLarge, boundary_of
from postsale.runtime.backoffice import FormError, submission_of
from postsale.runtime.clock import utcnow
from postsale.runtime.csrf import CSRF_FIELD, CsrfRefused, csrf_token, from_elsewhere

MAX_TOKEN_BYTES = 200
SUBMISSION_FIELD = "submission"
# After a refusal, what is left of a body no larger than the limit plus this is read and dropped,
# so the browser gets the page instead of a reset connection.
DRAIN_BYTES = 1024 * 1024


class UploadRefused(Exception):
    """The file was not stored: the status to answer with and a sentence for the seller."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class TokenFirst(StreamedFile):
    """`StreamedFile` that also reads the form's CSRF token and its one-time submission token, and
    refuses a file that comes before both: CsrfRefused without a valid CSRF token, FormError
    without a submission token."""

    def __init__(self, boundary: bytes, storage: FileStorage, key: str, limit: int, expected: str) -> None:
        super().__init__(boundary, storage, key, limit)
        self.expected, self.token_ok = expected, False
        self.submission: str | None = None
        self._reading: bytes | None = None  # the name of the small field being read
        self._value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition", ""))
        name, filename = params.get(b"name"), params.get(b"filename")
        small = filename is None and name in (CSRF_FIELD.encode(), SUBMISSION_FIELD.encode())
        self._reading, self._value = (name if small else None), b""
        if name == FIELD.encode() and filename is not None:
            if not self.token_ok:
                raise CsrfRefused()
            self.submission = submission_of(self.submission or "")  # FormError: nothing stored
        super()._headers_finished()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._reading is not None:
            # Cut short: a longer value is no token, and is refused as a wrong one.
            self._value = (self._value + data[start:end])[:MAX_TOKEN_BYTES + 1]
        super()._part_data(data, start, end)

    def _part_end(self) -> None:
        if self._reading == CSRF_FIELD.encode():
            self.token_ok = hmac.compare_digest(self._value, self.expected.encode())
        elif self._reading is not None:
            self.submission = self._value.decode(errors="replace")
        self._reading = None
        super()._part_end()


async def _drain(request: Request, already: int, declared: int | None) -> None:
    left = (declared - already) if declared is not None else DRAIN_BYTES
    if left > DRAIN_BYTES:
        return
    try:
        async for chunk in request.stream():
            left -= len(chunk)
            if left < 0:
                return
    except Exception:  # noqa: BLE001 - the browser went away: nothing left to read
        return


async def receive(request: Request, product_id: str) -> ProductFile:
    """Stores the uploaded file as a file of the download product and hands the product's waiting
    deliveries their link. Raises `UploadRefused` (nothing stored) or `CsrfRefused`."""
    if from_elsewhere(request):
        raise CsrfRefused()
    engine, storage = request.app.state.engine, request.app.state.storage
    limit = request.app.state.delivery_settings.max_upload_bytes
    too_large = (f"The file is larger than the limit of {readable_size(limit)}, so it was not uploaded. "
                 f"Make it smaller (compress it, or split it into parts) and upload it again.")
    try:
        await run_in_threadpool(_check_download_product, engine, product_id)
    except Exception as exc:  # the API's 404 or 409, said for a seller
        raise UploadRefused(getattr(exc, "status_code", 404), "Only a download product has files.") from None
    try:
        boundary = boundary_of(request.headers.get("content-type", ""))
    except BadUpload:
        raise UploadRefused(415, "Send the file with the upload form on this page.") from None
    length = request.headers.get("content-length", "")
    declared = int(length) if length.isascii() and length.isdigit() and len(length) < 19 else None
    if declared is not None and declared > limit + DRAIN_BYTES:
        raise UploadRefused(413, too_large)
    file_id = download.new_file_id()
    receiver = TokenFirst(boundary, storage, download.storage_key(product_id, file_id), limit, csrf_token(request))
    read = 0
    try:
        async for chunk in request.stream():
            read += len(chunk)
            await run_in_threadpool(receiver.feed, chunk)
        if not receiver.token_ok:
            raise CsrfRefused()
        if receiver.received is None or receiver.received.size == 0:
            raise UploadRefused(422, "Choose a file to upload (an empty file cannot be sent to customers).")
        received = await run_in_threadpool(receiver.finish)
    except (UploadTooLarge, CsrfRefused, FormError) as exc:
        await run_in_threadpool(receiver.abort)
        await _drain(request, read, declared)
        if isinstance(exc, CsrfRefused):
            raise
        if isinstance(exc, FormError):  # no one-time token
            raise UploadRefused(422, str(exc)) from None
        raise UploadRefused(413, too_large) from None
    except BadUpload as exc:
        await run_in_threadpool(receiver.abort)
        raise UploadRefused(422, f"The upload did not arrive whole ({exc}). Upload the file again.") from None
    except BaseException:
        await run_in_threadpool(receiver.abort)
        raise
    try:
        file, created = await run_in_threadpool(_record_file, engine, product_id, file_id, received, utcnow(),
                                                receiver.submission)
    except BaseException:
        await run_in_threadpool(storage.delete, download.storage_key(product_id, file_id))
        raise
    if not created:  # the same form posted again: its first submission stored the file
        await run_in_threadpool(storage.delete, download.storage_key(product_id, file_id))
    return file
