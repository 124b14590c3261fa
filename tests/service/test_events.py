"""Live job events end to end on real parts: `dvd360 serve` (Redis, Celery workers, the API; tiny model) plus two more
`dvd360 api` processes on the same Redis (a replica with auth off, and one with auth on and keys made by
`dvd360 keys create`). Event sequences, resume with Last-Event-ID, previews, Prefer: wait, deadlines, webhook filters
and `dvd360 submit --wait`."""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from cli.submit import sse_events
from core.events import id_tuple
from core.jobs import waiting_key
from core.records import JobRecord
from tests.conftest import ROOT, SIGNING_KEY, free_port
from tests.processes import start_api, wait_ready
from tests.stores import stored_job as make_job
from tests.tools import video_stream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]  # the shared 2-core machine is often busy
SMALL = {"num_frames": 8, "height": 64, "width": 128, "steps": 4, "seed": 3}
LONG = {**SMALL, "num_frames": 16, "steps": 100}  # runs long enough to be canceled or to miss a deadline
FINAL = {"succeeded", "failed", "canceled"}


def read_events(base: str, job_id: str, headers=None, stop=None, timeout: float = 120, params=None) -> list:
    """Every (id, type, data) of one connection until the server closes it after the final event, or until
    `stop(event)` is true (then the client disconnects)."""
    events = []
    url = f"{base}/jobs/{job_id}/events"
    with httpx.stream("GET", url, headers=headers or {}, params=params, timeout=timeout) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(answer.iter_lines()):
            events.append(event)
            if stop is not None and stop(event):
                break
    return events


def submit(base: str, headers=None, **body) -> dict:
    answer = httpx.post(f"{base}/generate", json={"prompt": "a volcano", **body}, headers=headers or {}, timeout=30)
    assert answer.status_code == 202, answer.text
    return answer.json()


def types(events) -> list[str]:
    return [kind for _, kind, _ in events]


@pytest.fixture(scope="module")
def serve_redis(service) -> dict[str, str]:
    """The embedded service's Redis URL and data folder, from its redis-server child process (the serve log's
    banner line says the same, but concurrent test runs share that log file)."""
    port = int(service.rsplit(":", 1)[1])
    listener = next(
        c.pid for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    )
    server = next(p for p in psutil.Process(listener).children(recursive=True) if "redis-server" in p.name())
    redis_port = next(c.laddr.port for c in server.net_connections("tcp") if c.status == psutil.CONN_LISTEN)
    # redis-server works in its --dir, the data folder's redis/
    return {"redis_url": f"redis://127.0.0.1:{redis_port}/0", "data_dir": str(Path(server.cwd()).parent)}


@pytest.fixture(scope="module")
def apis(serve_redis, tmp_path_factory):
    """Two more API processes on the service's Redis: `replica` (auth off, like the service) and `secured` (auth
    on), with API keys for alice and bob."""
    env = {
        "DVD360_REDIS_URL": serve_redis["redis_url"],
        "DVD360_DATA_DIR": serve_redis["data_dir"],
        "DVD360_SIGNING_KEY": SIGNING_KEY,
    }
    keys = {
        who: subprocess.run(
            [str(Path(sys.executable).parent / "dvd360"), "keys", "create", who],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        for who in ("alice", "bob")
    }
    log = tmp_path_factory.mktemp("apis") / "apis.log"
    ports = {"replica": free_port(), "secured": free_port()}
    processes = [
        start_api({**env, "DVD360_AUTH": "false"}, log, ports["replica"]),
        start_api({**env, "DVD360_AUTH": "true"}, log, ports["secured"]),
    ]
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        for url in urls.values():
            wait_ready(url, processes, log)
        yield SimpleNamespace(keys=keys, **urls)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def bare_api(redis_url, tmp_path_factory):
    """An API process on the session's Redis with no worker: the tests write the job's changes through JobStore, as
    the API and workers do, and read what the stream makes of them."""
    from tests.stores import job_store

    port, log = free_port(), tmp_path_factory.mktemp("bare_api") / "api.log"
    env = {"DVD360_REDIS_URL": redis_url, "DVD360_AUTH": "false", "DVD360_DATA_DIR": str(log.parent)}
    process = start_api({**env, "DVD360_SIGNING_KEY": SIGNING_KEY}, log, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, [process], log)
        yield SimpleNamespace(url=url, store=job_store(redis_url))
    finally:
        process.terminate()
        process.wait(timeout=20)


def stored_job(store, **request) -> JobRecord:
    return make_job(store, **SMALL, **request)


def test_resume_replay_and_nothing_after_the_final_event(bare_api) -> None:
    store = bare_api.store
    job = stored_job(store)
    live: list = []
    subscribed = threading.Event()
    reader = threading.Thread(
        target=lambda: live.extend(read_events(bare_api.url, job.id, stop=lambda e: subscribed.set(), timeout=30))
    )
    reader.start()
    assert subscribed.wait(30)  # it has the queued event: what follows reaches it live
    store.transition(job.id, "running")
    for step in (1, 2, 3):
        store.report_progress(job.id, step, 3, 1.0)
    store.publish(job.id, "preview", {"step": 3, "total": 3, "image": "data:image/jpeg;base64,", "width": 256})
    store.transition(job.id, "succeeded", outputs={})
    reader.join(timeout=30)
    assert types(live) == ["queued", "running", "progress", "progress", "progress", "preview", "succeeded"]
    assert store.publish(job.id, "progress", {"step": 4}) is None  # nothing after the final event
    after_first_step = live[2][0]
    resumed = read_events(bare_api.url, job.id, {"Last-Event-ID": after_first_step})
    assert [e[0] for e in resumed] == [e[0] for e in live[3:]]
    assert types(read_events(bare_api.url, job.id)) == ["succeeded"]
    assert types(read_events(bare_api.url, job.id, params={"last_event_id": "0"})) == types(live)


def test_a_running_job_shows_its_latest_state_and_a_finished_one_without_a_stream_its_final(bare_api) -> None:
    store = bare_api.store
    job = stored_job(store)
    store.transition(job.id, "running")
    for step in (1, 2):
        store.report_progress(job.id, step, 4, 3.0)
    first = read_events(bare_api.url, job.id, stop=lambda e: e[1] == "progress")
    assert types(first) == ["queued", "running", "progress"] and first[-1][2]["step"] == 2
    store.transition(job.id, "failed", error="boom", error_type="input")
    store.redis.delete(f"dvd360:events:{job.id}")  # as a job from before event streams, or an expired stream
    final = read_events(bare_api.url, job.id)
    assert types(final) == ["failed"] and final[0][2]["error_type"] == "input" and final[0][2]["job"]["error"] == "boom"


def test_queue_position_goes_down_as_jobs_ahead_leave(bare_api) -> None:
    store = bare_api.store
    store.redis.delete(waiting_key("tiny"))  # jobs other tests left queued on this Redis
    ahead = [stored_job(store), stored_job(store)]  # two jobs queued before it (no worker takes them here)
    job = stored_job(store)
    assert store.position(job) == 3
    positions = []

    def leave(event) -> bool:
        positions.append(event[2]["queue_position"])
        if len(positions) < 3:
            store.transition(ahead[len(positions) - 1].id, "running")  # the next one starts: one less ahead
        return len(positions) == 3

    read_events(bare_api.url, job.id, stop=leave, timeout=30)
    assert positions == [3, 2, 1]
    for done in (*ahead, job):
        store.transition(done.id, "canceled")


def test_a_job_streams_queued_running_every_step_previews_then_succeeded(service) -> None:
    job = submit(service, **SMALL)
    events = read_events(service, job["id"])
    kinds = types(events)
    positions = [data["queue_position"] for _, kind, data in events if kind == "queued"]
    assert kinds[0] == "queued" and positions[0] >= 1 and positions == sorted(positions, reverse=True)
    assert kinds[len(positions)] == "running" and kinds[-1] == "succeeded", kinds  # queued again only when moving up
    progress = [data for _, kind, data in events if kind == "progress"]
    assert [p["step"] for p in progress] == [1, 2, 3, 4] and progress[-1]["percent"] == 100.0
    assert all(p["total"] == 4 and p["eta_s"] >= 0 for p in progress)
    previews = [data for _, kind, data in events if kind == "preview"]  # every 2 steps by default
    assert [p["step"] for p in previews] == [2, 4]
    for preview in previews:
        assert preview["image"].startswith("data:image/jpeg;base64,")
        picture = Image.open(io.BytesIO(base64.b64decode(preview["image"].split(",", 1)[1])))
        assert picture.format == "JPEG" and picture.size == (preview["width"], preview["height"]) == (256, 128)
    finished = events[-1][2]["job"]
    assert finished["id"] == job["id"] and finished["state"] == "succeeded"
    assert finished["outputs"]["video_url"].startswith("http")
    ids = [id_tuple(event_id) for event_id, *_ in events[len(positions) - 1 :]]  # a position update repeats an id
    assert ids == sorted(set(ids))
    # a finished job replays only its final event, then closes; of the previews only the last is kept
    assert types(read_events(service, job["id"])) == ["succeeded"]
    history = read_events(service, job["id"], {"Last-Event-ID": "0"})
    assert [data["step"] for _, kind, data in history if kind == "preview"] == [4]


def test_a_failed_job_ends_with_its_error_type(service, serve_redis, tmp_path) -> None:
    flow = np.zeros((8, 32, 64, 2), np.float32)
    np.save(tmp_path / "flow.npy", flow)
    with (tmp_path / "flow.npy").open("rb") as f:
        upload = httpx.post(f"{service}/flows", files={"file": ("flow.npy", f)}, data={"kind": "raw_flow"}).json()
    for stored in Path(serve_redis["data_dir"]).rglob(f"*{upload['id']}*"):  # the upload vanishes before the job
        if stored.is_file():
            stored.unlink()
    job = submit(service, **SMALL, flow_id=upload["id"])
    events = read_events(service, job["id"])
    assert types(events)[-1] == "failed", events
    data = events[-1][2]
    assert data["error_type"] == "input" and "upload" in data["error"]
    assert data["job"]["state"] == "failed" and data["job"]["error_type"] == "input"


def test_a_canceled_job_ends_canceled(service) -> None:
    job = submit(service, **LONG)
    seen = read_events(service, job["id"], stop=lambda e: e[1] == "progress")
    assert httpx.post(f"{service}/jobs/{job['id']}/cancel").status_code == 200
    rest = read_events(service, job["id"], {"Last-Event-ID": seen[-1][0]})
    assert types(rest)[-1] == "canceled"
    assert rest[-1][2]["error_type"] == "canceled" and rest[-1][2]["job"]["progress"]["step"] < 100


def test_deadlines_stop_a_running_job_and_a_queued_one_never_starts(service) -> None:
    running = httpx.post(
        f"{service}/generate", json={"prompt": "x", **LONG}, headers={"Cancel-After": "6s"}, timeout=30
    ).json()
    assert running["request"]["deadline_s"] == 6
    read_events(service, running["id"], stop=lambda e: e[1] in {"running", *FINAL})
    queued = submit(service, **SMALL, deadline_s=1)  # waits behind the long job, and its deadline comes first
    events = read_events(service, queued["id"])
    assert types(events)[0] == "queued" and types(events)[-1] == "canceled" and "running" not in types(events)
    assert events[-1][2]["error_type"] == "deadline" and events[-1][2]["job"]["started_at"] is None
    last = read_events(service, running["id"])[-1]
    assert last[1] == "canceled" and last[2]["error_type"] == "deadline", last
    assert last[2]["job"]["progress"]["step"] < 100 and "deadline" in last[2]["job"]["error"]


def test_a_reconnect_on_another_replica_with_last_event_id_loses_and_repeats_nothing(service, apis) -> None:
    job = submit(service, **SMALL)
    whole: list = []
    reader = threading.Thread(
        target=lambda: whole.extend(read_events(apis.replica, job["id"], {"Last-Event-ID": "0"})), daemon=True
    )
    reader.start()  # an uninterrupted reader on the replica, from the first event
    first = read_events(service, job["id"], stop=lambda e: e[1] == "progress" and e[2]["step"] == 2)
    rest = read_events(apis.replica, job["id"], {"Last-Event-ID": first[-1][0]})
    reader.join(timeout=120)
    assert types(whole)[-1] == "succeeded"
    assert [e[0] for e in first + rest] == [e[0] for e in whole]  # the same events, once each, in order
    assert [e[1] for e in first + rest] == types(whole)
    assert types(whole).count("progress") == 4 and types(whole).count("preview") == 2


def test_another_key_gets_404_and_no_key_401(apis) -> None:
    alice, bob = ({"X-API-Key": apis.keys[who]} for who in ("alice", "bob"))
    job = submit(apis.secured, alice, **SMALL)
    url = f"{apis.secured}/jobs/{job['id']}/events"
    assert httpx.get(url, headers=bob).status_code == 404
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Last-Event-ID": "x"} | alice).status_code == 422
    events = read_events(apis.secured, job["id"], {"Authorization": f"Bearer {apis.keys['alice']}"})
    assert types(events)[-1] == "succeeded"


def test_prefer_wait_answers_with_the_finished_job_or_the_usual_202(service) -> None:
    quick = httpx.post(
        f"{service}/generate", json={"prompt": "x", **SMALL, "steps": 1}, headers={"Prefer": "wait=60"}, timeout=90
    )
    assert quick.status_code == 201 and quick.headers["preference-applied"] == "wait=60", quick.text
    assert quick.json()["state"] == "succeeded" and quick.json()["outputs"]["video_url"]
    started = time.monotonic()
    slow = httpx.post(f"{service}/generate", json={"prompt": "x", **LONG}, headers={"Prefer": "wait=1"}, timeout=30)
    assert slow.status_code == 202 and slow.headers["preference-applied"] == "wait=1"
    assert slow.json()["state"] in {"queued", "running"} and time.monotonic() - started < 10
    httpx.post(f"{service}/jobs/{slow.json()['id']}/cancel")
    for header, value in [
        ("Prefer", "wait=61"),
        ("Prefer", "wait=soon"),
        ("Cancel-After", "soon"),
        ("Cancel-After", "0s"),
    ]:
        refused = httpx.post(f"{service}/generate", json={"prompt": "x", **SMALL}, headers={header: value})
        assert refused.status_code == 422 and header in refused.json()["detail"], refused.text


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_webhook_events_filter_and_progress_throttle(service) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        chosen = submit(service, **SMALL, webhook_url=url, webhook_events=["progress", "completed"])
        default = submit(service, **{**SMALL, "steps": 1}, webhook_url=url)
        for job in (chosen, default):
            assert types(read_events(service, job["id"]))[-1] == "succeeded"
        deadline = time.monotonic() + 30
        while sum(p["event"] == "job.succeeded" for p in _Receiver.received) < 2:
            assert time.monotonic() < deadline, _Receiver.received
            time.sleep(0.2)
        by_job = {
            job["id"]: [p for p in _Receiver.received if p["job"]["id"] == job["id"]] for job in (chosen, default)
        }
        assert [p["event"] for p in by_job[default["id"]]] == ["job.succeeded"]  # completed only, as Replicate
        events = {p["event"] for p in by_job[chosen["id"]]}
        assert events == {"job.progress", "job.succeeded"}, events  # no job.running: "start" was not asked for
        progress = [p for p in by_job[chosen["id"]] if p["event"] == "job.progress"]
        assert all(p["job"]["state"] == "running" and p["job"]["progress"]["step"] >= 1 for p in progress)
        running_s = httpx.get(f"{service}/jobs/{chosen['id']}").json()["timings"]["running_s"]
        assert len(progress) <= 1 + running_s / 2  # at most one per 2 s
    finally:
        server.shutdown()


def test_cli_submit_waits_with_a_progress_bar_and_downloads_the_outputs(service, tmp_path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dvd360"), "submit", "--server", service, "--prompt", "a forest road",
         "--wait", "--out", str(tmp_path / "out"), "--frames", "8", "--height", "64", "--steps", "2", "--seed", "2"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["state"] == "succeeded" and summary["seed"] == 2
    assert "2/2" in done.stderr  # the tqdm bar reached the last step
    probe = video_stream(Path(summary["files"]["video"]))
    assert (probe["width"], probe["height"]) == (128, 64)
    assert Path(summary["files"]["poster"]).read_bytes()[:2] == b"\xff\xd8"


def test_cli_submit_finds_the_local_serve_and_never_overwrites_results(service, serve_redis, tmp_path) -> None:
    env = {**os.environ, "DVD360_DATA_DIR": serve_redis["data_dir"], "PYTHONPATH": str(ROOT)}
    env.pop("DVD360_SERVER", None)
    options = ["--frames", "8", "--height", "64", "--steps", "1", "--fps", "8", "--guidance", "1", "--loop"]
    summaries = []
    for seed in ("5", "6"):
        done = subprocess.run(
            [str(Path(sys.executable).parent / "dvd360"), "submit", "--prompt", "a lake", "--seed", seed, *options,
             "--wait", "--no-progress", "--out", str(tmp_path)],
            capture_output=True, text=True, timeout=180, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        summaries.append(json.loads(done.stdout.strip().splitlines()[-1]))
    files = {Path(f) for s in summaries for f in s["files"].values()}
    assert files == set(tmp_path.iterdir()) and len(files) == 6  # video, poster and views of each job, by job id
    for summary in summaries:
        assert Path(summary["files"]["video"]).name == f"{summary['id']}.mp4"
    job = httpx.get(f"{service}/jobs/{summaries[0]['id']}").json()
    assert job["request"]["loop"] is True and job["request"]["guidance_scale"] == 1.0
