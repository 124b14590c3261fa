"""Motion uploads: checked by decoding (the upload policy and every reader's checks), then stored in the shared
storage under a fresh id, so any worker on any host can read it. The user's file name is kept only as a label."""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO

import redis
from fastapi import HTTPException
from pydantic import BaseModel

from core.records import FlowRef
from core.request import FlowKind
from core.retention import index_upload
from core.storage import upload_key
from models.media.errors import FlowInputError
from models.media.flow_kinds import FLOW_KINDS, RAW_FLOW_SUFFIXES, VIDEO_SUFFIXES
from models.media.flow_video import check_motion_file

UPLOAD_SUFFIXES = {*VIDEO_SUFFIXES, *RAW_FLOW_SUFFIXES}


def flow_record_key(flow_id: str) -> str:
    return f"dvd360:flow:{flow_id}"


def _label(filename: str | None) -> str:
    """The file's base name without control characters: shown back to its owner, never used as a path."""
    return "".join(c for c in Path(filename or "upload").name if c.isprintable())[:200]


class UploadRecord(BaseModel):
    """A stored upload, as kept in Redis for its owner."""

    id: str
    owner: str
    key: str
    kind: FlowKind
    name: str
    bytes: int
    sha256: str
    frames: int

    @property
    def ref(self) -> FlowRef:
        return FlowRef(id=self.id, key=self.key, kind=self.kind)


def file_sha256(file: BinaryIO) -> str:
    """The digest of an upload's bytes (read in chunks, then rewound for the reader after)."""
    digest = hashlib.sha256()
    while chunk := file.read(1 << 20):
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()


class Uploads:
    def __init__(self, client: redis.Redis, storage, ttl_s: int) -> None:
        self.client, self.storage, self.ttl_s = client, storage, ttl_s

    def receive(self, owner: str, file: BinaryIO, filename: str | None, kind: str) -> UploadRecord:
        """Check and store one upload; returns its record. 422 says what is wrong with the file."""
        if kind not in FLOW_KINDS:
            raise HTTPException(422, f"kind {kind!r} is unknown; use one of {', '.join(FLOW_KINDS)}")
        suffix = Path(filename or "").suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise HTTPException(422, f"file type {suffix or 'none'!r} is not accepted; use {sorted(UPLOAD_SUFFIXES)}")
        flow_id = uuid.uuid4().hex
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{flow_id}{suffix}"
            digest, size = hashlib.sha256(), 0
            with path.open("wb") as out:
                while chunk := file.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            if size == 0:
                raise HTTPException(422, "the uploaded file is empty")
            try:
                frames = check_motion_file(path, kind)  # POST /generate checks it against the frames asked for
            except FlowInputError as exc:
                raise HTTPException(422, str(exc).replace(path.name, _label(filename))) from exc
            key = upload_key(flow_id, suffix)
            try:
                self.storage.put(key, path)
            except Exception as exc:  # any storage failure: the upload is not kept, the client may retry
                raise HTTPException(503, "storage is unavailable; retry shortly", {"Retry-After": "10"}) from exc
        record = UploadRecord(
            id=flow_id,
            owner=owner,
            key=key,
            kind=kind,
            name=_label(filename),
            bytes=size,
            sha256=digest.hexdigest(),
            frames=frames,
        )
        self.client.set(flow_record_key(flow_id), record.model_dump_json(), ex=self.ttl_s)
        index_upload(self.client, flow_id, key)  # the reaper deletes the file when the record expires
        return record

    def get(self, owner: str, flow_id: str) -> UploadRecord | None:
        raw = self.client.get(flow_record_key(flow_id))
        record = UploadRecord.model_validate_json(raw) if raw else None
        return record if record and record.owner == owner else None

    def discard(self, record: UploadRecord) -> None:
        """Drop an upload that no job will use (its request was refused after it was stored)."""
        self.client.delete(flow_record_key(record.id))
        self.storage.delete(record.key)
