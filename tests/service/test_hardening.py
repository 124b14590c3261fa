"""Hardening of the job lifecycle found by hostile probes, each against a real Redis server: deadlines fire once, a
revoked key loses its open streams and waits, open streams per key are capped, a resume id past the stream's end is
refused, an idempotent retry is answered at the active-job cap, and retention leaves neither events behind nor a 404
where a 410 belongs."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import create_key, revoke_key
from cli.submit import sse_events
from core.deadlines import DEADLINES_KEY
from core.events import stream_key
from core.jobs import WEBHOOK_QUEUE, job_key
from core.retention import sweep
from core.settings import Settings
from core.storage import LocalStorage
from tests.conftest import free_port
from tests.processes import start_api, wait_ready
from tests.stores import job_store, stored_job
from worker.reaper import Reaper

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
SMALL = {"num_frames": 8, "height": 64, "width": 128, "steps": 4}
RECHECK_S = 0.5


@pytest.fixture(scope="module")
def secured(redis_url, tmp_path_factory):
    """An API process with auth on, key re-checks every 0.5 s and at most 2 open streams per key (no worker: the
    tests write the jobs' changes themselves)."""
    port, log = free_port(), tmp_path_factory.mktemp("secured") / "api.log"
    env = {
        "DVD360_REDIS_URL": redis_url,
        "DVD360_AUTH": "true",
        "DVD360_DATA_DIR": str(log.parent),
        "DVD360_SIGNING_KEY": "k",
        "DVD360_KEY_RECHECK_S": str(RECHECK_S),
        "DVD360_MAX_STREAMS_PER_KEY": "2",
        "DVD360_RATE_LIMIT": "100000/minute",
        "DVD360_READ_RATE_LIMIT": "100000/minute",
    }
    process = start_api(env, log, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, [process], log)
        yield SimpleNamespace(url=url, store=job_store(redis_url), db=redis.Redis.from_url(redis_url))
    finally:
        process.terminate()
        process.wait(timeout=20)


class Reader(threading.Thread):
    """Reads one job's event stream in the background until the server closes it."""

    def __init__(self, url: str, job_id: str, key: str, **headers: str) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = f"{url}/jobs/{job_id}/events", {"X-API-Key": key, **headers}
        self.events: list = []
        self.status: int | None = None
        self.opened = threading.Event()

    def run(self) -> None:
        with httpx.stream("GET", self.url, headers=self.headers, timeout=60) as answer:
            self.status = answer.status_code
            self.opened.set()
            for event in sse_events(answer.iter_lines()) if answer.status_code == 200 else ():
                self.events.append(event)


def _running_job(secured, owner: str):
    job = stored_job(secured.store, owner, **SMALL)
    secured.store.transition(job.id, "running")
    return job


def test_a_revoked_key_loses_its_open_stream_and_its_wait(secured) -> None:
    key = create_key(secured.db, "carol")
    job = _running_job(secured, "carol")
    reader = Reader(secured.url, job.id, key)
    reader.start()
    assert reader.opened.wait(30) and reader.status == 200
    secured.store.report_progress(job.id, 1, 4, 1.0)
    deadline = time.monotonic() + 30
    while not any(kind == "progress" for _, kind, _ in reader.events):
        assert time.monotonic() < deadline, reader.events
        time.sleep(0.05)
    revoke_key(secured.db, "carol")
    reader.join(timeout=10 * RECHECK_S + 5)
    assert not reader.is_alive()  # closed within a few re-check intervals, not when the job ends
    secured.store.transition(job.id, "succeeded", outputs={"video": f"outputs/{job.id}/video.mp4"})
    assert "succeeded" not in [kind for _, kind, _ in reader.events]

    key = create_key(secured.db, "dave")
    waiting: dict = {}

    def wait() -> None:
        body = {"prompt": "x", **SMALL}
        headers = {"X-API-Key": key, "Prefer": "wait=30"}
        waiting["answer"] = httpx.post(f"{secured.url}/generate", json=body, headers=headers, timeout=60)

    started = time.monotonic()
    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not secured.db.zcard("dvd360:streams:dave"):  # the request holds a slot: it is waiting (nothing runs jobs)
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    revoke_key(secured.db, "dave")
    thread.join(timeout=20)
    answer = waiting["answer"]
    assert answer.status_code == 401 and "revoked" in answer.json()["detail"], answer.text
    assert time.monotonic() - started < 15 and "outputs" not in answer.text


def test_open_streams_per_key_are_capped(secured) -> None:
    key = create_key(secured.db, "erin")
    jobs = [_running_job(secured, "erin") for _ in range(3)]
    readers = [Reader(secured.url, job.id, key) for job in jobs[:2]]
    for reader in readers:
        reader.start()
        assert reader.opened.wait(30) and reader.status == 200
    refused = httpx.get(f"{secured.url}/jobs/{jobs[2].id}/events", headers={"X-API-Key": key}, timeout=30)
    assert refused.status_code == 429 and refused.headers["retry-after"], refused.text
    assert "2 event streams" in refused.json()["detail"]
    secured.store.transition(jobs[0].id, "canceled")  # its stream ends, and gives its slot back
    readers[0].join(timeout=30)
    third = Reader(secured.url, jobs[2].id, key)
    third.start()
    assert third.opened.wait(30) and third.status == 200
    for job in jobs[1:]:
        secured.store.transition(job.id, "canceled")
    for reader in (readers[1], third):
        reader.join(timeout=30)
        assert reader.events[-1][1] == "canceled"


def test_a_resume_id_beyond_the_streams_end_is_refused(secured) -> None:
    key = create_key(secured.db, "frank")
    job = _running_job(secured, "frank")
    last = secured.db.xrevrange(stream_key(job.id), count=1)[0][0].decode()
    beyond = f"{int(last.split('-')[0]) + 60_000}-0"
    answer = httpx.get(
        f"{secured.url}/jobs/{job.id}/events", headers={"X-API-Key": key, "Last-Event-ID": beyond}, timeout=30
    )
    assert answer.status_code == 422 and "Last-Event-ID" in answer.json()["detail"]
    secured.store.transition(job.id, "succeeded", outputs={})
    resumed = Reader(secured.url, job.id, key, **{"Last-Event-ID": last})
    resumed.start()
    resumed.join(timeout=30)
    assert [kind for _, kind, _ in resumed.events] == ["succeeded"]  # the last id itself: the final event comes


@pytest.fixture
def reaper(redis_url, tmp_path):
    redis.Redis.from_url(redis_url).flushdb()
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, signing_key="k")
    return Reaper(job_store(redis_url), LocalStorage(tmp_path / "storage", "k"), settings)


def test_deadlines_fire_once_each_even_with_two_reapers(reaper, redis_url) -> None:
    store = reaper.store
    jobs = [stored_job(store, deadline_s=0.5, **SMALL) for _ in range(60)]
    assert store.redis.zcard(DEADLINES_KEY) == 60
    future = time.time() + 10
    fired: list[int] = []
    threads = [threading.Thread(target=lambda: fired.append(reaper.enforce_deadlines(future))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(fired) == 60 and reaper.enforce_deadlines(future) == 0
    for job in jobs:
        record = store.get(job.id)
        assert (record.state, record.error_type) == ("canceled", "deadline")
        events = store.redis.xrange(stream_key(job.id))
        assert [e[1][b"type"] for e in events].count(b"canceled") == 1
    assert store.redis.zcard(DEADLINES_KEY) == 0
    assert not any(b"dvd360.deadline" in m for m in store.redis.lrange(WEBHOOK_QUEUE, 0, -1))  # no timer tasks


def test_a_finished_job_leaves_no_deadline_behind(reaper) -> None:
    job = stored_job(reaper.store, deadline_s=600, **SMALL)
    reaper.store.transition(job.id, "succeeded", outputs={})
    assert reaper.store.redis.zscore(DEADLINES_KEY, job.id) is None
    assert reaper.enforce_deadlines(time.time() + 3600) == 0 and reaper.store.get(job.id).state == "succeeded"


def test_retention_deletes_the_event_stream_and_the_tombstone_outlives_a_short_record(redis_url, tmp_path) -> None:
    db = redis.Redis.from_url(redis_url)
    db.flushdb()
    settings = Settings(
        redis_url=redis_url, data_dir=tmp_path, auth=False, signing_key="k", job_ttl_s=2, result_ttl_s=60
    )
    api = TestClient(create_app(settings))
    job = api.post("/generate", json={"prompt": "x", **SMALL}).json()
    store = api.app.state.services.store
    outputs = tmp_path / "storage" / "outputs" / job["id"]
    outputs.mkdir(parents=True)
    (outputs / "video.mp4").write_bytes(b"x")
    store.transition(job["id"], "succeeded", outputs={"video": f"outputs/{job['id']}/video.mp4"})
    assert db.ttl(job_key(job["id"])) > 60  # the record outlives its files (60 s), whatever its own lifetime (2 s)
    assert db.ttl(stream_key(job["id"])) > 60 and api.get(f"/jobs/{job['id']}").status_code == 200
    counts = sweep(db, LocalStorage(tmp_path / "storage", "k"), 60, 60, now=time.time() + 61)
    assert counts["jobs_expired"] == 1 and not Path(outputs).exists()
    assert not db.exists(stream_key(job["id"])) and not db.exists(job_key(job["id"]))  # events went with it
    gone = api.get(f"/jobs/{job['id']}")
    assert gone.status_code == 410 and "expired" in gone.json()["detail"]
