"""Request bodies read in chunks to a spool (memory, then disk): never whole in memory."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from flask import request
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.formparser import FormDataParser

from review_ui.problems import ApiProblemError
from scanner.private_dirs import private_dir

CHUNK = 64 * 1024
IN_MEMORY = 1024 * 1024
FORM_OVERHEAD = 64 * 1024


@dataclass
class Upload:
    """A request body spooled into ``dir``, which is removed with everything in it."""

    dir: Path
    body: IO[bytes]
    size: int
    parts: list[IO[bytes]] = field(default_factory=list)


def too_large(limit: int) -> ApiProblemError:
    return ApiProblemError(413, "too-large", "Content Too Large", f"the limit is {limit} bytes")


@contextmanager
def spooled_body(
    work_root: Path, limit: int, on_chunk: Callable[[bytes], None]
) -> Iterator[Upload]:
    """Read the raw body, feeding each chunk to ``on_chunk`` (the signature check)."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)  # refused before a byte of it is read
    with tempfile.TemporaryDirectory(prefix="upload-", dir=private_dir(work_root)) as tmp:
        spool = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY, dir=tmp)  # noqa: SIM115
        with spool:
            size = 0
            stream = request.environ["wsgi.input"]
            remaining = request.content_length
            while remaining is None or remaining > 0:
                chunk = stream.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not chunk:
                    break
                size += len(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
                if size > limit:
                    raise too_large(limit)
                on_chunk(chunk)
                spool.write(chunk)
            spool.seek(0)
            upload = Upload(Path(tmp), spool, size)
            try:
                yield upload
            finally:
                for part in upload.parts:
                    part.close()


def parse_multipart(upload: Upload) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
    """Parse a spooled multipart body; file parts are written to files in the upload dir."""
    counter = iter(range(1000))

    def factory(*_: Any, **__: Any) -> IO[bytes]:
        part = (upload.dir / f"part-{next(counter)}").open("w+b")
        upload.parts.append(part)
        return part

    parser = FormDataParser(
        stream_factory=factory,
        max_form_memory_size=FORM_OVERHEAD,
        max_form_parts=32,
        silent=False,
    )
    try:
        _, form, files = parser.parse(
            upload.body, request.mimetype, upload.size, request.mimetype_params
        )
    except ValueError as exc:
        raise ApiProblemError(
            400, "malformed-multipart", "Malformed multipart body", str(exc)
        ) from None
    return form, files


def saved_path(part: FileStorage) -> Path:
    """Where a file part was written by ``parse_multipart``'s stream factory."""
    stream: Any = part.stream
    stream.flush()
    return Path(stream.name)
