"""GET /metrics: request counts and latencies of this API process, plus job and queue figures read from Redis
(finished jobs by state, job durations, queue depth per base model)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from core.job_metrics import DURATION_BUCKETS, DURATIONS_KEY, EXPIRED_KEY, JOBS_KEY, REAPED_KEY


class JobMetricsCollector(Collector):
    """Read at scrape time: finished jobs by state, succeeded-job durations, and each queue's depth."""

    def __init__(self, client: redis.Redis, queues: Iterable[str]) -> None:
        self.client, self.queues = client, list(queues)

    def collect(self) -> Iterator:
        try:
            jobs = self.client.hgetall(JOBS_KEY)
            durations = {k.decode(): float(v) for k, v in self.client.hgetall(DURATIONS_KEY).items()}
            depths = [(q, self.client.llen(q)) for q in self.queues]
            reaped, expired = self.client.hgetall(REAPED_KEY), self.client.hgetall(EXPIRED_KEY)
        except redis.RedisError:
            return  # the API answers 503s meanwhile; a scrape without job metrics is better than a failed one
        finished = CounterMetricFamily(
            "dvd360_jobs_finished", "Jobs finished, by base model and final state.", labels=["base_model", "state"]
        )
        for field, count in jobs.items():
            model, state = field.decode().split("|")
            finished.add_metric([model, state], int(count))
        yield finished
        histogram = HistogramMetricFamily(
            "dvd360_job_duration_seconds", "Submit-to-finish time of succeeded jobs.", labels=["base_model"]
        )
        for model in sorted({k.split("|")[0] for k in durations}):
            buckets = [
                (str(float(b)) if b != "+Inf" else b, durations.get(f"{model}|{b}", 0))
                for b in (*DURATION_BUCKETS, "+Inf")
            ]
            histogram.add_metric([model], buckets, durations.get(f"{model}|sum", 0))
        yield histogram
        depth = GaugeMetricFamily("dvd360_queue_depth", "Jobs waiting in each base model's queue.", labels=["queue"])
        for queue, count in depths:
            depth.add_metric([queue], count)
        yield depth
        reaped_family = CounterMetricFamily(
            "dvd360_jobs_reaped",
            "Abandoned jobs the reaper ended or requeued (reason: lease_expired | lost_message).",
            labels=["reason", "action"],
        )
        for field, count in reaped.items():
            reaped_family.add_metric(field.decode().split("|"), int(count))
        yield reaped_family
        expired_family = CounterMetricFamily(
            "dvd360_retention_deleted", "Expired jobs' outputs and uploads deleted by retention.", labels=["kind"]
        )
        for kind, count in expired.items():
            expired_family.add_metric([kind.decode()], int(count))
        yield expired_family


class Metrics:
    """One registry per app (tests build several apps in one process)."""

    def __init__(self, client: redis.Redis, queues: Iterable[str]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dvd360_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dvd360_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(JobMetricsCollector(client, queues))

    async def middleware(self, request: Request, call_next):
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            self.requests.labels(request.method, _route_template(request), "500").inc()
            raise
        route = _route_template(request)
        self.requests.labels(request.method, route, str(response.status_code)).inc()
        self.latency.labels(request.method, route).observe(time.perf_counter() - start)
        return response

    def response(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _route_template(request: Request) -> str:
    """The matched route's path template (/jobs/{job_id}), never the raw path: ids would explode the label count.
    Routing records the route in the scope (after `call_next`)."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"
