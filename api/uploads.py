"""POST /models' multipart body, streamed: the file part goes straight into a locked `.partial`
file of the artifact store, and reading stops as soon as it passes `max_upload_bytes` (a 413),
so no request is ever spooled whole to a temporary folder before its size is known."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import anyio
from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from api.errors import ApiError, Loc
from api.partials import PARTIAL_SUFFIX, locked_partial
from api.storage import StoredFile
from db.settings import Settings

if TYPE_CHECKING:  # the library defines its callback type for type checkers only
    from python_multipart.multipart import MultipartCallbacks

FILE_FIELD = "file"
MAX_FIELDS = 10
MAX_FIELD_BYTES = 16 * 1024
MAX_PART_HEADER_BYTES = 16 * 1024


class UploadInvalid(ApiError):
    def __init__(self, message: str, *, loc: Loc = ("body",)) -> None:
        super().__init__(422, message, loc=loc, error_type="multipart_invalid")


@dataclass
class _Part:
    name: str | None = None
    is_file: bool = False
    data: bytearray = field(default_factory=bytearray)


class _Events:
    """The parser's callbacks, recorded so that the file is written outside of them (in a thread)."""

    def __init__(self) -> None:
        self.part = _Part()
        self.header_name = bytearray()
        self.header_value = bytearray()
        self.header_bytes = 0
        self.fields: dict[str, str] = {}
        self.files = 0
        self.file_chunks: list[bytes] = []

    def on_part_begin(self) -> None:
        self.part = _Part()
        self.header_bytes = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_value += data[start:end]

    def _count_header(self, size: int) -> None:
        self.header_bytes += size
        if self.header_bytes > MAX_PART_HEADER_BYTES:
            raise UploadInvalid(f"a part's headers are larger than {MAX_PART_HEADER_BYTES} bytes")

    def on_header_end(self) -> None:
        if bytes(self.header_name).lower() == b"content-disposition":
            _, options = parse_options_header(bytes(self.header_value))
            name = options.get(b"name")
            self.part.name = name.decode("utf-8", "replace") if name is not None else None
            self.part.is_file = b"filename" in options
        self.header_name, self.header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        if self.part.name is None:
            raise UploadInvalid("every part needs a Content-Disposition header with a name")
        if self.part.is_file:
            self.files += 1
            if self.part.name != FILE_FIELD or self.files > 1:
                raise UploadInvalid(f"send exactly one file, in the {FILE_FIELD!r} field", loc=("body", self.part.name))
        elif len(self.fields) >= MAX_FIELDS:
            raise UploadInvalid(f"more than {MAX_FIELDS} form fields")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.is_file:
            self.file_chunks.append(data[start:end])
            return
        self.part.data += data[start:end]
        if len(self.part.data) > MAX_FIELD_BYTES:
            # A part without a name never gets here: on_headers_finished refused it.
            name = cast(str, self.part.name)
            raise UploadInvalid(f"form field larger than {MAX_FIELD_BYTES} bytes", loc=("body", name))

    def on_part_end(self) -> None:
        if not self.part.is_file and self.part.name is not None:
            self.fields[self.part.name] = self.part.data.decode("utf-8", "replace")

    def callbacks(self) -> MultipartCallbacks:
        return {  # type: ignore[return-value]  # a TypedDict built by name
            name: getattr(self, name)
            for name in (
                "on_part_begin",
                "on_part_data",
                "on_part_end",
                "on_header_field",
                "on_header_value",
                "on_header_end",
                "on_headers_finished",
            )
        }


async def receive_model_upload(request: Request, *, settings: Settings) -> tuple[dict[str, str], StoredFile | None]:
    """Read a multipart body: its form fields, and its `file` part stored under `models/` (None if
    the body had no file). Past `max_upload_bytes` of file data the read stops with a 413 and the
    partial file is removed; so it is on any other error."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadInvalid("a multipart/form-data body needs a boundary parameter in its Content-Type")
    events = _Events()
    uri = f"models/{uuid.uuid4().hex}.safetensors"
    target = settings.artifact_path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(PARTIAL_SUFFIX)
    digest, size = hashlib.sha256(), 0
    parser = MultipartParser(boundary, events.callbacks())
    try:
        with locked_partial(partial) as out:
            async for chunk in request.stream():
                try:
                    parser.write(chunk)
                except FormParserError as error:
                    raise UploadInvalid(f"malformed multipart body: {error}") from None
                for data in events.file_chunks:
                    size += len(data)
                    if size > settings.max_upload_bytes:
                        raise ApiError(
                            413,
                            f"model file larger than {settings.max_upload_bytes} bytes (FLIPGUARD_MAX_UPLOAD_BYTES)",
                            loc=("body", FILE_FIELD),
                            error_type="too_large",
                        )
                    digest.update(data)
                if events.file_chunks:
                    data, events.file_chunks = b"".join(events.file_chunks), []
                    await anyio.to_thread.run_sync(out.write, data)
            try:
                parser.finalize()
            except FormParserError as error:
                raise UploadInvalid(f"malformed multipart body: {error}") from None
            if not events.files:
                partial.unlink()
                return events.fields, None
            out.flush()
            partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    return events.fields, StoredFile(uri=uri, path=target, sha256=digest.hexdigest(), size=size)
