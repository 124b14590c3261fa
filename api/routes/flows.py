"""Motion uploads (`POST /flows`): checked by decoding, stored, then named by `flow_id` in `POST /generate`."""

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from api.deps import Svc, Writer
from api.openapi import UPLOAD_BODY, errors
from api.schemas import Upload

router = APIRouter(tags=["flows"])


@router.post(
    "/flows",
    status_code=201,
    response_model=Upload,
    responses=errors(401, 422, 429),
    openapi_extra={"requestBody": UPLOAD_BODY},
)
def upload_flow(
    svc: Svc,
    caller: Writer,
    file: Annotated[UploadFile, File(description="Flow video, raw flow (.npy/.npz/.flo) or a 360° clip.")],
    kind: Annotated[str, Form(description="flow_video, raw_flow or panorama_clip")] = "flow_video",
) -> Upload:
    record = svc.uploads.receive(caller.owner, file.file, file.filename, kind)
    return Upload.model_validate(record.model_dump(include=set(Upload.model_fields)))
