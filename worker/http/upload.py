"""A posted claim file, streamed to a temporary file as it arrives: the size limit is enforced while
reading (never the whole body in memory), as the raw body or the one file part of a multipart form."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

GZIP_MAGIC = b"\x1f\x8b"
# Room for a multipart form's boundaries and part headers around the file.
MULTIPART_OVERHEAD = 64 * 1024


class UploadRefused(Exception):
    def __init__(self, status: int, title: str, detail: str):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


@dataclass
class Upload:
    path: Path
    name: str | None  # the multipart part's file name, when the form gave one
    size: int
    head: bytes  # the first bytes (gzip magic check)


def too_large(limit: int) -> UploadRefused:
    return UploadRefused(413, "File too large", f"the body is over the limit of {limit} bytes "
                         f"(ADJUDICATION_MAX_FILE_BYTES); nothing was stored")


async def receive(chunks: AsyncIterator[bytes], content_type: str | None, limit: int, folder: str | None) -> Upload:
    """Write the body (or its file part) to a temporary file; the caller removes `path`."""
    fd, name = tempfile.mkstemp(prefix="claim-file-", suffix=".upload", dir=folder)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as sink:
            mime, params = parse_options_header(content_type or "")
            if mime == b"multipart/form-data":
                upload = await _multipart(chunks, params.get(b"boundary"), sink, limit)
            else:
                upload = await _raw(chunks, sink, limit)
        upload.path = path
        return upload
    except BaseException:
        path.unlink(missing_ok=True)
        raise


async def _raw(chunks: AsyncIterator[bytes], sink, limit: int) -> Upload:
    size = 0
    head = b""
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        if len(head) < 4:
            head = (head + chunk)[:4]
        sink.write(chunk)
    return Upload(Path(), None, size, head)


async def _multipart(chunks: AsyncIterator[bytes], boundary: bytes | None, sink, limit: int) -> Upload:
    if not boundary:
        raise UploadRefused(400, "Bad multipart form", "multipart/form-data without a boundary")
    state = {"headers": {}, "field": b"", "value": b"", "in_file": False, "files": 0, "name": None,
             "size": 0, "head": b""}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, params = parse_options_header(state["headers"].get(b"content-disposition", b""))
        filename = params.get(b"filename")
        state["in_file"] = filename is not None
        if filename is not None:
            state["files"] += 1
            if state["files"] > 1:
                raise UploadRefused(400, "Bad multipart form", "post one claim file per request")
            state["name"] = filename.decode("utf-8", "replace")
        state["headers"] = {}

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if not state["in_file"]:
            return  # other form fields are ignored
        piece = data[start:end]
        state["size"] += len(piece)
        if state["size"] > limit:
            raise too_large(limit)
        if len(state["head"]) < 4:
            state["head"] = (state["head"] + piece)[:4]
        sink.write(piece)

    parser = MultipartParser(boundary, {
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
    })
    seen = 0
    try:
        async for chunk in chunks:
            seen += len(chunk)
            if seen > limit + MULTIPART_OVERHEAD:
                raise too_large(limit)
            parser.write(chunk)
        parser.finalize()
    except UploadRefused:
        raise
    except Exception as error:  # python-multipart's parse errors: the form is broken
        raise UploadRefused(400, "Bad multipart form", f"the multipart form cannot be read "
                            f"({type(error).__name__})") from None
    if state["files"] == 0:
        raise UploadRefused(400, "Bad multipart form", "the form has no file part (a part with a filename)")
    return Upload(Path(), state["name"], state["size"], state["head"])
