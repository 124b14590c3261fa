"""`dvd360 serve` (the embedded one-command service), `api`, `worker`, `worker-alive` and `keys create`."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

keys_app = typer.Typer(help="API keys (stored hashed in Redis).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(api)
    app.command()(worker)
    app.command("worker-alive")(worker_alive)
    app.add_typer(keys_app, name="keys")


def free_port() -> int:
    """A free TCP port on loopback (the embedded Redis; the tests' and benchmarks' servers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_command(queues: list[str], concurrency: int, pool: str = "prefork") -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "-Q",
        ",".join(queues),
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--without-mingle",
        "--without-gossip",
        "--loglevel",
        "INFO",
    ]


def _generation_queues(base_models: list[str] | None = None) -> list[str]:
    from models.registry import load_registry
    from worker.jobs import queue_name
    from worker.settings import get_settings

    return [queue_name(m) for m in base_models or load_registry(get_settings().model_registry).names()]


def _webhook_worker_command() -> list[str]:
    """Webhook deliveries wait on slow receivers: threads, apart from the generation worker."""
    from worker.jobs import WEBHOOK_QUEUE

    return worker_command([WEBHOOK_QUEUE], 8, "threads")


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    models: Annotated[Path | None, typer.Option(help="Model registry YAML (default: the tiny model).")] = None,
    data_dir: Annotated[Path, typer.Option(help="Jobs' files and the Redis data.")] = Path("dvd360-data"),
) -> None:
    """Run everything on this machine: a Redis server, one worker and the API. Auth is off. Ctrl-C stops all."""
    import uvicorn

    from worker.redis_server import RedisServerError, start_redis_server

    data_dir = data_dir.resolve()
    (data_dir / "redis").mkdir(parents=True, exist_ok=True)
    redis_port = free_port()
    os.environ.update(
        DVD360_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        DVD360_STORAGE="local",
        DVD360_DATA_DIR=str(data_dir),
        DVD360_AUTH="false",
        DVD360_SIGNING_KEY=os.environ.get("DVD360_SIGNING_KEY") or secrets.token_hex(32),
    )
    if models is not None:
        os.environ["DVD360_MODEL_REGISTRY"] = str(models.resolve())
    else:  # load the tiny model while the worker starts, not on the first job
        os.environ.setdefault("DVD360_WARM_MODELS", "tiny")
    try:
        children = [start_redis_server(redis_port, data_dir / "redis")]
    except RedisServerError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        children.append(subprocess.Popen(worker_command(_generation_queues(), 1)))
        children.append(subprocess.Popen(_webhook_worker_command()))
        from api.app import create_app

        typer.echo(f"dvd360: http://{host}:{port}  (auth off, data in {data_dir})")
        uvicorn.run(create_app(), host=host, port=port, log_level="info")
    finally:
        for child in reversed(children):
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


def api(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Run only the HTTP API (settings from DVD360_* variables)."""
    import uvicorn

    uvicorn.run("api.app:create_app", factory=True, host=host, port=port)


def worker(
    base_models: Annotated[str | None, typer.Option(help="Comma-separated base models (default: all).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs at once (1 per GPU).")] = 1,
    webhooks: Annotated[bool, typer.Option(help="Deliver webhooks instead of generating.")] = False,
) -> None:
    """Run a Celery worker for the queues of these base models (or the webhook deliverer)."""
    names = base_models.split(",") if base_models else None
    if not webhooks:
        from cli.models import pull_configured_models

        pull_configured_models()  # DVD360_PULL_MODELS: before the queues are read from the registry
    command = _webhook_worker_command() if webhooks else worker_command(_generation_queues(names), concurrency)
    os.execv(sys.executable, command)


def worker_alive(max_age: Annotated[float, typer.Option(help="Seconds since the last heartbeat.")] = 90) -> None:
    """Exit 0 when the worker's heartbeat file is fresh (the liveness probe), 1 otherwise."""
    from worker.heartbeat import heartbeat_age
    from worker.settings import get_settings

    path = get_settings().heartbeat_file
    age = heartbeat_age(path) if path is not None else None
    if age is None or age > max_age:
        typer.echo(f"worker heartbeat {path} is {'missing' if age is None else f'{age:.0f} s old'}", err=True)
        raise typer.Exit(1)


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Argument(help="Who the key is for.")]) -> None:
    """Create an API key: printed once, stored only as a hash."""
    import redis

    from api.auth import create_key
    from worker.settings import get_settings

    typer.echo(create_key(redis.Redis.from_url(get_settings().redis_url), name))
