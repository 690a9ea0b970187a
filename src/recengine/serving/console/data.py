"""Data: upload an event file, read its validation report, then ingest it.

The file is read by the same readers and checks as ``recengine ingest`` (:mod:`recengine.data`),
so the report names each bad row by its row and column in the file, and ingesting stores what
the command would: each chunk in its own transaction, events identified by their id or content,
so ingesting the same file twice adds nothing. Both steps need a write key: the upload is kept
on the server (in the registry's folder, so every server process of the host finds it) until
it is ingested, for at most :data:`KEEP_SECONDS`. Its size is bounded by
``RECENGINE_MAX_REQUEST_BYTES``, as every request is.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from recengine.data.readers import iter_events
from recengine.data.validation import ColumnMapping, ValidationReport
from recengine.errors import DataError, RecengineError
from recengine.serving.bell import Ring
from recengine.serving.console.render import context_of, failure, page
from recengine.serving.console.session import Editor, Session, Viewer
from recengine.serving.deps import Context

__all__ = ["KEEP_SECONDS", "router"]

router = APIRouter()

#: How long an upload waits to be ingested.
KEEP_SECONDS = 3600
#: The file names the readers know (see :func:`recengine.data.readers.detect_format`).
_SUFFIX = re.compile(r"\.(csv|tsv|parquet|jsonl)(\.gz)?$", re.IGNORECASE)
#: An upload's name on the server: a random token and the file's suffix.
_STORED = re.compile(r"[0-9a-f]{32}\.(csv|tsv|parquet|jsonl)(\.gz)?", re.IGNORECASE)


def _folder(ctx: Context) -> Path:
    return Path(ctx.state.registry.root) / ".console-uploads"


def _forget_old(folder: Path) -> None:
    """Delete the uploads older than :data:`KEEP_SECONDS` (another process may be at it too)."""
    for path in folder.glob("*"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < time.time() - KEEP_SECONDS:
                path.unlink()


def _mapping(columns: str) -> ColumnMapping:
    return ColumnMapping.parse(columns.strip(), default_event_type="view")


def _check(path: Path, mapping: ColumnMapping) -> ValidationReport:
    """The file's whole report, read a chunk at a time (memory bounded by a chunk)."""
    report = ValidationReport(path.name)
    for _, chunk in iter_events(path, columns=mapping):
        report.extend(chunk)
    return report


def _show(request: Request, session: Session, status: int = 200, **values: Any) -> Response:
    ctx = context_of(request)
    return page(request, session, "data.html", status=status,
                max_bytes=ctx.settings.max_request_bytes, **values)


@router.get("/console/data")
def data_page(request: Request, session: Viewer) -> Response:
    return _show(request, session)


@router.post("/console/data/check")
async def check(request: Request, session: Editor,
                file: Annotated[UploadFile | None, File()] = None,
                columns: Annotated[str, Form()] = "") -> Response:
    """Keep the upload and show its validation report, with the button that ingests it."""
    name = (file.filename or "") if file is not None else ""
    if file is None or not name:
        return _show(request, session, 422, error="choose a file to upload", field="file")
    match = _SUFFIX.search(name)
    if match is None:
        return _show(request, session, 422, field="file",
                     error=f"{name!r}: the name must end in .csv, .tsv, .parquet or .jsonl "
                           "(each may be gzipped, .gz)")
    folder = _folder(context_of(request))
    folder.mkdir(parents=True, exist_ok=True)
    _forget_old(folder)
    stored = folder / f"{secrets.token_hex(16)}{match.group(0).lower()}"
    stored.write_bytes(await file.read())
    try:
        report = await run_in_threadpool(_check, stored, _mapping(columns))
    except RecengineError as exc:  # unreadable, or a column missing: no report at all
        stored.unlink(missing_ok=True)
        status, message, field = failure(exc)
        return _show(request, session, status, error=message, field=field, name=name)
    return _show(request, session, name=name, report=report, token=stored.name,
                 columns=columns)


def _ingest(ctx: Context, path: Path, mapping: ColumnMapping) -> dict[str, int]:
    """Store the file's valid events as ``recengine ingest --store`` does."""
    stored = duplicates = rows = 0
    for events, chunk in iter_events(path, columns=mapping):
        rows += chunk.rows_read
        result = ctx.store.append(events, identify_by_content=True)
        stored, duplicates = stored + result.accepted, duplicates + result.duplicates
    return {"rows": rows, "stored": stored, "duplicates": duplicates}


@router.post("/console/data/ingest")
async def ingest(request: Request, session: Editor, token: Annotated[str, Form()] = "",
                 name: Annotated[str, Form()] = "", columns: Annotated[str, Form()] = ""
                 ) -> Response:
    ctx = context_of(request)
    path = _folder(ctx) / token
    if not _STORED.fullmatch(token) or not path.is_file():
        return _show(request, session, 404, field="token",
                     error="that upload is gone (ingested already, or older than an hour): "
                           "upload the file again")
    try:
        result = await run_in_threadpool(_ingest, ctx, path, _mapping(columns))
    except DataError as exc:
        status, message, field = failure(exc)
        return _show(request, session, status, error=message, field=field, name=name)
    path.unlink(missing_ok=True)
    if result["stored"]:
        ctx.metrics.add_events(result["stored"])
        ctx.state.changed(Ring.EVENTS)  # every process folds them in from the store
    return _show(request, session, name=name, ingested=result)
