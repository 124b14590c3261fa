"""Result storage behind one interface: S3/MinIO (presigned URLs) or a local folder (HMAC-signed links the API
serves). Keys are derived from the job id, so a redelivered job overwrites its outputs instead of adding more."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import time
from pathlib import Path
from urllib.parse import quote

from core.settings import Settings

CONTENT_TYPES = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".npy": "application/octet-stream"}


def output_key(job_id: str, name: str) -> str:
    return f"outputs/{job_id}/{name}"


def upload_key(flow_id: str, suffix: str) -> str:
    """Motion uploads live in the same storage as results: API and workers may share no disk (Kubernetes)."""
    return f"uploads/{flow_id}{suffix}"


class LocalStorage:
    def __init__(self, root: Path, signing_key: str) -> None:
        self.root, self.signing_key = root.resolve(), signing_key.encode()

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"key {key!r} leaves the storage folder")
        return path

    def put(self, key: str, source: Path) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.partial")
        shutil.copyfile(source, tmp)
        tmp.replace(target)

    def get(self, key: str, target: Path) -> None:
        shutil.copyfile(self.path(key), target)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        """Every file under a folder-like prefix (an expired job's outputs)."""
        shutil.rmtree(self.path(prefix), ignore_errors=True)

    def ping(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def signature(self, key: str, expires: int) -> str:
        return hmac.new(self.signing_key, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, key: str, expiry_s: int) -> tuple[str, int]:
        expires = int(time.time()) + expiry_s
        return f"/files/{quote(key)}?expires={expires}&sig={self.signature(key, expires)}", expires

    def verify(self, key: str, expires: int, sig: str) -> bool:
        # bytes: compare_digest refuses non-ASCII str, and a link's sig is whatever the client sends
        return expires >= time.time() and hmac.compare_digest(self.signature(key, expires).encode(), sig.encode())


class S3Storage:
    def __init__(self, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        )
        common = {
            "aws_access_key_id": settings.s3_access_key,
            "aws_secret_access_key": settings.s3_secret_key,
            "region_name": settings.s3_region,
            "config": config,
        }
        self.bucket = settings.s3_bucket
        self.client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, **common)
        # SigV4 signs the host: presign with the address clients use, not the in-cluster one
        public = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        self.presigner = boto3.client("s3", endpoint_url=public, **common)

    def put(self, key: str, source: Path) -> None:
        content_type = CONTENT_TYPES.get(Path(key).suffix, "application/octet-stream")
        # upload_file switches to multipart above 8 MB
        self.client.upload_file(str(source), self.bucket, key, ExtraArgs={"ContentType": content_type})

    def get(self, key: str, target: Path) -> None:
        self.client.download_file(self.bucket, key, str(target))

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> None:
        """Every object under a prefix (an expired job's outputs), a page of up to 1000 at a time."""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            if objects := [{"Key": o["Key"]} for o in page.get("Contents", [])]:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})

    def ping(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)

    def url(self, key: str, expiry_s: int) -> tuple[str, int]:
        url = self.presigner.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expiry_s
        )
        return url, int(time.time()) + expiry_s


def make_storage(settings: Settings) -> LocalStorage | S3Storage:
    if settings.storage == "s3":
        return S3Storage(settings)
    return LocalStorage(settings.data_dir / "storage", settings.signing_key)
