"""A client nobody here wrote: openapi-python-client generates one from the running embedded service's /openapi.json,
and it is used as any user would, through typed attributes only, with `raise_on_unexpected_status=True` (a status the
document does not list fails the test): submit (JSON), upload a flow (multipart) and generate with it, poll to
`succeeded` and read `outputs.video_url`, cancel, and read a 404 and a 422.

The generator pins httpx and typer below this project's, so set-up installs it into a folder of its own
(.venv/tools/openapi, `make test`), put first on its PYTHONPATH; the generated code itself runs here. Its one
setting maps the two media types of GET /files/{key} (video/mp4, image/jpeg) to bytes, as the generator wants one
binary type per answer."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
GENERATOR = ROOT / ".venv" / "tools" / "openapi"
CONFIG = "content_type_overrides:\n  video/mp4: application/octet-stream\n  image/jpeg: application/octet-stream\n"
CONFIG += "post_hooks: []\n"
SMALL = {"num_frames": 8, "height": 64, "width": 128, "steps": 2, "seed": 4}


@pytest.fixture(scope="module")
def generated(service, tmp_path_factory):
    """The client package, generated from the document the service serves."""
    if not (GENERATOR / "openapi_python_client").is_dir():
        pytest.fail(f"{GENERATOR} is missing: run `make test` (its set-up installs openapi-python-client there)")
    folder = tmp_path_factory.mktemp("client")
    (folder / "openapi.json").write_bytes(httpx.get(f"{service}/openapi.json", timeout=30).content)
    (folder / "config.yaml").write_text(CONFIG)
    done = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(folder / "openapi.json"),
         "--config", str(folder / "config.yaml"), "--meta", "none", "--output-path", str(folder / "dvd360_client")],
        capture_output=True, text=True, timeout=180, env={**os.environ, "PYTHONPATH": str(GENERATOR)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr  # nothing the generator dropped
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("dvd360_client")
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m.split(".")[0] == "dvd360_client"]:
            del sys.modules[name]


def _api(generated, name: str):
    return importlib.import_module(f"dvd360_client.api.{name}")


def _wait(generated, client, job_id: str, states: set[str], timeout_s: float = 120):
    get_job = _api(generated, "jobs.get_job")
    deadline = time.monotonic() + timeout_s
    while True:
        job = get_job.sync(job_id, client=client)
        if str(job.state) in states or time.monotonic() > deadline:
            return job
        time.sleep(0.3)


def test_a_generated_client_works_through_typed_attributes(generated, service) -> None:
    models = importlib.import_module("dvd360_client.models")
    types = importlib.import_module("dvd360_client.types")
    client = generated.Client(base_url=service, raise_on_unexpected_status=True, timeout=httpx.Timeout(60))
    create_job, cancel_job = _api(generated, "jobs.create_job"), _api(generated, "jobs.cancel_job")

    answer = create_job.sync_detailed(client=client, body=models.GenerationRequest(prompt="a volcano", **SMALL))
    assert answer.status_code == 202 and isinstance(answer.parsed, models.Job)
    job = _wait(generated, client, answer.parsed.id, {"succeeded", "failed"})
    assert str(job.state) == "succeeded", job.error
    assert job.outputs.video_url.startswith("http") and job.timings.pipeline_s > 0
    assert job.request.num_frames == 8 and job.seed == 4
    video = httpx.get(job.outputs.video_url, timeout=30)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"

    flow = io.BytesIO()
    np.save(flow, np.full((8, 32, 64, 2), 0.5, np.float32))
    body = models.FlowUploadForm(
        file=types.File(payload=flow, file_name="motion.npy"), kind=models.FlowUploadFormKind.RAW_FLOW
    )
    upload = _api(generated, "flows.upload_flow").sync(client=client, body=body)
    assert isinstance(upload, models.Upload) and upload.frames == 8 and str(upload.kind) == "raw_flow"
    with_flow = create_job.sync(
        client=client, body=models.GenerationRequest(prompt="a road", flow_id=upload.id, **SMALL)
    )
    assert with_flow.request.flow_id == upload.id
    assert str(_wait(generated, client, with_flow.id, {"succeeded", "failed"}).state) == "succeeded"

    long = create_job.sync(client=client, body=models.GenerationRequest(prompt="long", **{**SMALL, "steps": 100}))
    canceled = cancel_job.sync(long.id, client=client)
    assert isinstance(canceled, models.Job) and str(canceled.state) in {"canceled", "running"}
    assert str(_wait(generated, client, long.id, {"canceled"}).state) == "canceled"

    missing = _api(generated, "jobs.get_job").sync_detailed("0" * 32, client=client)
    assert missing.status_code == 404 and isinstance(missing.parsed, models.Error) and "no job" in missing.parsed.detail
    refused = create_job.sync_detailed(client=client, body=models.GenerationRequest(prompt="x", num_frames=0))
    assert refused.status_code == 422 and isinstance(refused.parsed, models.Error)
    (error,) = refused.parsed.detail
    assert isinstance(error, models.FieldError) and error.loc == ["body", "num_frames"]
