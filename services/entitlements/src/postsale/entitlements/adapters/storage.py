"""Where uploaded files are kept: a small port, and a local folder behind it.

An S3-compatible store replaces `LocalFolderStorage` by implementing the same three calls:
`start_upload` (a multipart upload whose parts are the chunks written), `open` (a ranged or
streamed GET) and `delete`. Keys are made by entitlements (`<product id>/<file id>`), never by a
seller or a customer.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

CHUNK_BYTES = 256 * 1024
_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


class Upload(Protocol):
    """A file being written, chunk by chunk; nobody sees it until `commit`."""

    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class FileStorage(Protocol):
    def start_upload(self, key: str) -> Upload: ...

    def open(self, key: str) -> Iterator[bytes]:
        """The file's bytes, in chunks; FileNotFoundError when there is no such file."""
        ...

    def delete(self, key: str) -> None:
        """Removes the file; removing a missing file is no error."""
        ...


class _LocalUpload:
    def __init__(self, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        self.final, self.partial = final, final.with_name(final.name + ".part")
        self.file: BinaryIO | None = open(self.partial, "wb")

    def write(self, chunk: bytes) -> None:
        assert self.file is not None, "the upload is finished"
        self.file.write(chunk)

    def commit(self) -> None:
        assert self.file is not None, "the upload is finished"
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        self.file = None
        os.replace(self.partial, self.final)

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.partial.unlink(missing_ok=True)


class LocalFolderStorage:
    """Files under one folder (`ENTITLEMENTS_STORAGE_DIR`), written to a `.part` file first and
    renamed when complete, so a file is either whole or absent."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key

    def start_upload(self, key: str) -> Upload:
        return _LocalUpload(self._path(key))

    def open(self, key: str) -> Iterator[bytes]:
        handle = open(self._path(key), "rb")  # raises FileNotFoundError before the first chunk

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(CHUNK_BYTES):
                    yield chunk

        return chunks()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
