"""A multipart upload, parsed as it arrives: the part named `file` goes to storage chunk by chunk,
never whole in memory nor in a temporary file, and is refused as soon as it passes the limit."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from postsale.entitlements.adapters.storage import FileStorage, Upload

FIELD = "file"
MAX_OTHER_BYTES = 64 * 1024  # what other form fields may carry (they are ignored)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\\\]+")


class UploadTooLarge(Exception):
    pass


class BadUpload(ValueError):
    pass


def boundary_of(content_type: str) -> bytes:
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise BadUpload(f"send the file as multipart/form-data, in a field named `{FIELD}`")
    return params[b"boundary"]


def safe_name(raw: str) -> str:
    """The file's name as the customer will see it: no folders, no control characters."""
    name = _UNSAFE.sub("_", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    return name[:200] or "file"


@dataclass
class Received:
    name: str
    content_type: str
    size: int
    sha256: str


class StreamedFile:
    def __init__(self, boundary: bytes, storage: FileStorage, key: str, limit: int) -> None:
        self.storage, self.key, self.limit = storage, key, limit
        self.upload: Upload | None = None
        self.received: Received | None = None
        self._headers: dict[str, bytes] = {}  # raw: a file's name is UTF-8, whatever the header's charset
        self._field, self._value = b"", b""
        self._in_file = False
        self._other = 0
        self._hash = hashlib.sha256()
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        })

    def feed(self, chunk: bytes) -> None:
        try:
            self.parser.write(chunk)
        except MultipartParseError as exc:
            raise BadUpload(f"not a valid multipart body: {exc}") from None

    def finish(self) -> Received:
        """Once the whole body is in: the file, committed to storage."""
        try:
            self.parser.finalize()
        except MultipartParseError as exc:
            raise BadUpload(f"not a valid multipart body: {exc}") from None
        if self.received is None or self.upload is None:
            raise BadUpload(f"no file: send it in a field named `{FIELD}`, with a file name")
        self.upload.commit()
        return self.received

    def abort(self) -> None:
        if self.upload is not None:
            self.upload.abort()

    # --- parser callbacks ---

    def _part_begin(self) -> None:
        self._headers, self._field, self._value = {}, b"", b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        # Bytes, not text: given text, python-multipart encodes it as Latin-1 again, and a UTF-8
        # name such as "Übungen.pdf" came out with a replacement character for its "Ü".
        _, params = parse_options_header(self._headers.get("content-disposition", b""))
        name, filename = params.get(b"name"), params.get(b"filename")
        self._in_file = name == FIELD.encode() and filename is not None
        if not self._in_file:
            return
        if self.upload is not None:
            raise BadUpload("one file per upload")
        self.upload = self.storage.start_upload(self.key)
        # Browsers write a '"' in a file's name as %22 (the HTML standard's multipart encoding).
        shown = filename.decode("utf-8", "replace").replace("%22", '"')  # type: ignore[union-attr]
        content_type = self._headers.get("content-type", b"application/octet-stream").decode("utf-8", "replace")
        self.received = Received(name=safe_name(shown), content_type=content_type[:200],
                                 size=0, sha256="")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            self._other += end - start
            if self._other > MAX_OTHER_BYTES:
                raise BadUpload(f"only the field `{FIELD}` is read; the others are too large")
            return
        assert self.upload is not None and self.received is not None
        self.received.size += end - start
        if self.received.size > self.limit:
            raise UploadTooLarge(f"the file is larger than the limit of {self.limit} bytes")
        chunk = data[start:end]
        self._hash.update(chunk)
        self.upload.write(chunk)

    def _part_end(self) -> None:
        if self._in_file and self.received is not None:
            self.received.sha256 = self._hash.hexdigest()
        self._in_file = False
