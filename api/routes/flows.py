"""Motion uploads (`POST /flows`): checked by decoding, stored, then named by `flow_id` in `POST /generate`."""

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from api.deps import Svc, Writer
from api.uploads import public_flow

router = APIRouter(tags=["flows"])


@router.post("/flows", status_code=201)
def upload_flow(
    svc: Svc,
    who: Writer,
    file: Annotated[UploadFile, File(description="Flow video, raw flow (.npy/.npz/.flo) or a 360° clip.")],
    kind: Annotated[str, Form(description="flow_video, raw_flow or panorama_clip")] = "flow_video",
) -> dict:
    return public_flow(svc.uploads.receive(who, file.file, file.filename, kind))
