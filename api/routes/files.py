"""Signed downloads of local-storage results (the embedded default; S3 deployments hand out presigned URLs)."""

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from api.deps import Svc
from api.openapi import FILE, errors

router = APIRouter(tags=["files"])


@router.get("/files/{key:path}", response_class=FileResponse, responses={**FILE, **errors(403, 404, 422)})
def download_file(key: str, expires: int, sig: str, svc: Svc) -> FileResponse:
    """A job's output, through the signed link GET /jobs/{id} gives."""
    storage = svc.storage
    if not storage.verify(key, expires, sig):
        raise HTTPException(403, "this download link is invalid or expired; fetch the job again")
    try:
        path = storage.path(key)
    except ValueError:  # a signed key that leaves the folder: only a leaked signing key makes one
        raise HTTPException(404, "no such file") from None
    if not path.is_file():
        raise HTTPException(404, "no such file")
    return FileResponse(path)
