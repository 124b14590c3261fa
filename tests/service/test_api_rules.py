"""API rules against a real Redis server (the app in process, no worker): per-key limits, idempotency, body caps
while streaming, CORS from settings, metrics, validation messages."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings

pytestmark = pytest.mark.integration
BODY = {"prompt": "a volcano", "num_frames": 8, "height": 64, "width": 128, "steps": 1}


@pytest.fixture
def make_api(redis_url, tmp_path):
    def make(**overrides) -> TestClient:
        db = redis.Redis.from_url(redis_url)
        db.flushdb()  # each test starts from an empty job store and fresh limits
        settings = Settings(redis_url=redis_url, data_dir=tmp_path, auth=False, **overrides)
        return TestClient(create_app(settings))

    return make


def test_writes_and_reads_have_separate_rates_per_key_with_retry_after(make_api) -> None:
    api = make_api(rate_limit="3/minute", read_rate_limit="5/minute")
    writes = [api.post("/generate", json=BODY).status_code for _ in range(4)]
    assert writes == [202] * 3 + [429]
    # a page polling its job is not locked out by its own submissions, and the reverse
    reads = [api.get("/jobs").status_code for _ in range(6)]
    assert reads == [200] * 5 + [429]
    refused = api.get("/jobs")
    assert 1 <= int(refused.headers["retry-after"]) <= 60 and "5 per 1 minute" in refused.json()["detail"]
    assert "reads" in refused.json()["detail"]
    assert api.get("/healthz").status_code == 200  # probes are not rate limited


def test_requests_without_sizes_take_the_models_defaults_and_limits_name_the_field(make_api) -> None:
    api = make_api()
    models = {m["name"]: m for m in api.get("/models").json()["models"]}
    tiny = models["tiny"]
    small = {"num_frames": 8, "height": 64, "width": 128, "steps": 4, "guidance_scale": 7.5, "fps": 8}
    assert tiny["defaults"] == small
    assert tiny["limits"]["max_frames"] >= 64 and tiny["installed"] is True
    job = api.post("/generate", json={"prompt": "a volcano"}).json()
    assert {k: job["request"][k] for k in tiny["defaults"]} == tiny["defaults"]
    only_height = api.post("/generate", json={"prompt": "a volcano", "height": 128}).json()
    assert (only_height["request"]["height"], only_height["request"]["width"]) == (128, 256)
    for field, value, limit in (("num_frames", 129, "128"), ("height", 320, "256"), ("steps", 101, "100")):
        refused = api.post("/generate", json={"prompt": "a volcano", field: value})
        assert refused.status_code == 422, refused.text
        error = refused.json()["detail"][0]
        assert error["loc"] == ["body", field] and limit in error["msg"]


def test_output_links_are_absolute_from_the_public_url(make_api) -> None:
    api = make_api(public_url="https://videos.example.org/api/")
    job = api.post("/generate", json=BODY).json()
    services = api.app.state.services
    record = services.store.get(job["id"])
    done = record.model_copy(update={"state": "succeeded", "outputs": {"video": f"outputs/{job['id']}/video.mp4"}})
    from api.job_view import public_job

    view = public_job(done, services, "https://videos.example.org/api")
    assert view.outputs.video_url.startswith("https://videos.example.org/api/files/outputs/")


def test_queued_jobs_per_key_are_capped_and_freed_by_cancel(make_api) -> None:
    api = make_api(max_active_jobs=2)
    jobs = [api.post("/generate", json=BODY) for _ in range(2)]
    assert [j.status_code for j in jobs] == [202, 202]
    third = api.post("/generate", json=BODY)
    assert third.status_code == 429 and third.headers["retry-after"] == "10" and "2 jobs" in third.json()["detail"]
    assert api.post(f"/jobs/{jobs[0].json()['id']}/cancel").json()["state"] == "canceled"
    assert api.post("/generate", json=BODY).status_code == 202


def test_idempotency_key_returns_the_same_job_and_refuses_a_different_body(make_api) -> None:
    api = make_api()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = api.post("/generate", json=BODY, headers=key)
    again = api.post("/generate", json=BODY, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"
    assert api.get("/jobs").json()["total"] == 1
    other = api.post("/generate", json={**BODY, "prompt": "a glacier"}, headers=key)
    assert other.status_code == 422 and "different request" in other.json()["detail"]
    assert api.post("/generate", json=BODY, headers={"Idempotency-Key": "\x01"}).status_code in (400, 422)
    assert api.post("/generate", json=BODY, headers={"Idempotency-Key": "k" * 201}).status_code == 422


def test_a_refused_idempotent_request_can_be_retried(make_api) -> None:
    api = make_api(max_active_jobs=1)
    assert api.post("/generate", json=BODY).status_code == 202
    key = {"Idempotency-Key": "retry-me"}
    assert api.post("/generate", json=BODY, headers=key).status_code == 429
    api.post(f"/jobs/{api.get('/jobs').json()['jobs'][0]['id']}/cancel")
    assert api.post("/generate", json=BODY, headers=key).status_code == 202


def test_an_idempotent_retry_at_the_active_job_cap_gets_its_job(make_api) -> None:
    api = make_api(max_active_jobs=1)
    key = {"Idempotency-Key": "one"}
    first = api.post("/generate", json=BODY, headers=key)
    again = api.post("/generate", json=BODY, headers=key)  # the cap is full, with this very job
    assert first.status_code == again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert api.post("/generate", json=BODY).status_code == 429  # a new job is still refused


def test_multipart_generate_takes_the_flow_file_inline(make_api) -> None:
    api = make_api()
    flow = io.BytesIO()
    np.save(flow, np.ones((8, 32, 64, 2), np.float32))
    form = {k: str(v) for k, v in BODY.items()} | {"kind": "raw_flow", "circular_padding": "false"}
    answer = api.post("/generate", data=form, files={"file": ("motion.npy", flow.getvalue())})
    assert answer.status_code == 202, answer.text
    request = answer.json()["request"]
    assert len(request["flow_id"]) == 32 and request["circular_padding"] is False and "flow_key" not in request
    bad = api.post("/generate", data={**form, "num_frames": "129"}, files={"file": ("motion.npy", flow.getvalue())})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "num_frames"]
    broken = api.post("/generate", data=form, files={"file": ("motion.npy", b"\x93NUMPY garbage")})
    assert broken.status_code == 422 and "motion.npy" in broken.json()["detail"]
    both = api.post("/generate", data={**form, "flow_id": request["flow_id"]}, files={"file": ("m.npy", b"x")})
    assert both.status_code == 422


def test_bodies_are_capped_while_streaming(make_api) -> None:
    api = make_api(max_upload_mb=1)

    def chunks():  # no Content-Length: the cap must cut the stream, not a declared size
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="f.npy"\r\n\r\n'
        for _ in range(40):
            yield b"x" * 65536

    answer = api.post("/flows", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert answer.status_code == 413 and "1.1 MB" in answer.json()["detail"]
    declared = api.post("/generate", content=b"{}", headers={"Content-Length": str(50 * 2**20)})
    assert declared.status_code == 413
    assert api.post("/generate", content=b"[1, 2", headers={"Content-Type": "application/json"}).status_code == 422


def test_cors_comes_from_settings(make_api) -> None:
    preflight = {"Origin": "https://studio.example", "Access-Control-Request-Method": "POST"}
    allowed = make_api(cors_origins="https://studio.example").options("/generate", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://studio.example"
    closed = make_api().options("/generate", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers


def test_metrics_count_requests_queue_depth_and_finished_jobs(make_api, redis_url) -> None:
    from core.job_metrics import record_finished

    api = make_api()
    api.post("/generate", json=BODY)
    api.post("/generate", json={**BODY, "steps": 0})
    record_finished(redis.Redis.from_url(redis_url), "tiny", "succeeded", 3.5)
    record_finished(redis.Redis.from_url(redis_url), "tiny", "failed", 1.0)
    text = api.get("/metrics").text
    assert 'dvd360_http_requests_total{method="POST",route="/generate",status="202"} 1.0' in text
    assert 'dvd360_http_requests_total{method="POST",route="/generate",status="422"} 1.0' in text
    assert 'dvd360_queue_depth{queue="gen.tiny"} 1.0' in text
    assert 'dvd360_jobs_finished_total{base_model="tiny",state="failed"} 1.0' in text
    assert 'dvd360_job_duration_seconds_bucket{base_model="tiny",le="5.0"} 1.0' in text
    assert 'dvd360_job_duration_seconds_bucket{base_model="tiny",le="2.0"} 0.0' in text


def test_webhook_targets_are_checked(make_api) -> None:
    api = make_api()
    for url, reason in [
        ("ftp://example.com/hook", "http"),
        ("http://127.0.0.1:9/hook", "private"),
        ("http://user:pw@example.com/", "credentials"),
    ]:
        answer = api.post("/generate", json={**BODY, "webhook_url": url})
        error = answer.json()["detail"][0]
        assert answer.status_code == 422 and error["loc"] == ["body", "webhook_url"], (url, answer.text)
        assert reason in error["msg"], (url, answer.text)


def test_validation_names_the_field(make_api) -> None:
    api = make_api()
    cases = {
        "prompt": {"prompt": ""},
        "num_frames": {"num_frames": 0},
        "steps": {"steps": 101},
        "guidance_scale": {"guidance_scale": 31},
        "seed": {"seed": -1},
        "unknown_field": {"unknown_field": 1},
    }
    for field, change in cases.items():
        answer = api.post("/generate", json={**BODY, **change})
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][-1] == field, (field, answer.text)
    odd = api.post("/generate", json={**BODY, "width": 192})
    assert odd.status_code == 422 and "2 x height" in odd.json()["detail"][0]["msg"]
    unknown = api.post("/generate", json={**BODY, "base_model": "sdxl"})
    assert unknown.status_code == 422 and "tiny" in unknown.json()["detail"][0]["msg"]


def test_download_links_expire(make_api, tmp_path) -> None:
    from core.storage import LocalStorage

    api = make_api(signing_key="k")
    storage = LocalStorage(tmp_path / "storage", "k")
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 16)
    storage.put("outputs/j/video.mp4", tmp_path / "clip.mp4")
    fresh, _ = storage.url("outputs/j/video.mp4", 60)
    stale, _ = storage.url("outputs/j/video.mp4", -1)
    assert api.get(fresh).status_code == 200
    assert api.get(stale).status_code == 403 and "expired" in api.get(stale).json()["detail"]


def test_long_video_requests_are_checked_before_anything_is_queued(make_api) -> None:
    api = make_api()
    flow = io.BytesIO()
    np.save(flow, np.ones((10, 32, 64, 2), np.float32))
    uploaded = api.post("/flows", data={"kind": "raw_flow"}, files={"file": ("ten.npy", flow.getvalue())}).json()
    assert uploaded["frames"] == 10
    base = {"prompt": "a long pan", "flow_id": uploaded["id"], "height": 64}
    short = api.post("/generate", json={**base, "num_frames": 32})
    assert short.status_code == 422, short.text
    error = short.json()["detail"][0]
    assert error["loc"] == ["body", "num_frames"] and "10 frames" in error["msg"] and "loop" in error["msg"]
    looped = api.post("/generate", json={**base, "num_frames": 32, "loop": True})
    assert looped.status_code == 202 and looped.json()["request"]["loop"] is True
    for change in ({"interpolate_to": 25}, {"interpolate_to": 24, "fps": 24}):  # not offered; not above fps
        answer = api.post("/generate", json={"prompt": "x", **change})
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][-1] == "interpolate_to", answer.text
    assert api.post("/generate", json={"prompt": "x", "interpolate_to": 24}).status_code == 202
    assert api.get("/jobs").json()["total"] == 2  # the refused requests queued nothing


def test_quality_presets_solvers_and_sizes_above_the_native_one(make_api) -> None:
    api = make_api()
    tiny = api.get("/models").json()["models"][0]
    assert tiny["native_size"] == [64, 128] and tiny["limits"]["max_height"] == 256
    assert tiny["presets"]["draft"] == {"scheduler": "unipc", "steps": 3}
    draft = api.post("/generate", json={"prompt": "x", "quality": "draft"}).json()["request"]
    assert (draft["quality"], draft["scheduler"], draft["steps"]) == ("draft", "unipc", 3)
    chosen = api.post("/generate", json={"prompt": "x", "quality": "draft", "steps": 7, "scheduler": "dpmpp_2m"})
    assert (chosen.json()["request"]["scheduler"], chosen.json()["request"]["steps"]) == ("dpmpp_2m", 7)
    plain = api.post("/generate", json={"prompt": "x"}).json()["request"]
    assert (plain["scheduler"], plain["steps"], plain["refine"]) == ("ddim", 4, True)  # as before presets existed
    large = api.post("/generate", json={"prompt": "x", "height": 256, "refine": False}).json()["request"]
    assert (large["height"], large["width"], large["refine"]) == (256, 512, False)
    for change, field in [
        ({"scheduler": "euler"}, "scheduler"),
        ({"quality": "best"}, "quality"),
        ({"height": 320}, "height"),
    ]:
        refused = api.post("/generate", json={"prompt": "x", **change})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", field], refused.text
