"""`dvd360 serve` (the embedded one-command service), `api`, `worker`, `worker-alive` and `keys create`."""

from __future__ import annotations

import contextlib
import copy
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

EMBEDDED_KEY_NAME = "local"
keys_app = typer.Typer(help="API keys (stored hashed in Redis).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(api)
    app.command()(worker)
    app.command("worker-alive")(worker_alive)
    app.command()(reaper)
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
    from core.jobs import queue_name
    from core.settings import get_settings
    from models.registry import load_registry

    return [queue_name(m) for m in base_models or load_registry(get_settings().model_registry).names()]


def _webhook_worker_command() -> list[str]:
    """Webhook deliveries wait on slow receivers: threads, apart from the generation worker."""
    from core.jobs import WEBHOOK_QUEUE

    return worker_command([WEBHOOK_QUEUE], 8, "threads")


def reaper_command() -> list[str]:
    return [sys.executable, "-m", "worker.reaper"]


def _exit_on_sigterm(signum: int, _frame) -> None:
    # uvicorn re-raises the signal it stopped for once it has shut down; without a handler SIGTERM would end this
    # process right there, before the `finally` that stops the children
    raise SystemExit(128 + signum)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    models: Annotated[Path | None, typer.Option(help="Model registry YAML (default: the tiny model).")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Jobs' files and the Redis data (default: DVD360_DATA_DIR, else the per-user data folder)."),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(help="Allow a non-loopback --host without authentication (anyone on the network can use it)."),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="Show the output of Redis, the workers, the reaper and the API here (banners, warnings, requests) "
            "instead of in <data folder>/logs/{redis,worker,webhooks,reaper,api}.log.",
        ),
    ] = False,
) -> None:
    """Run everything on this machine: a Redis server, one worker, the reaper and the API. Auth is off unless
    DVD360_AUTH=1 (then a key is created once, kept in the data folder and printed). One serve per data folder and
    port: a second one is refused before it starts anything, naming the first. The console ends with the URL
    line; everything the services say goes to <data folder>/logs (--verbose: here). Ctrl-C or SIGTERM stops all."""
    from cli.single_instance import AlreadyServing, DataFolderLock, listen

    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    auth = os.environ.get("DVD360_AUTH", "").strip().lower() in ("1", "true", "yes", "on")
    if not auth and not insecure and not _is_loopback(host):
        raise typer.BadParameter(
            f"{host} is reachable from other machines and authentication is off: set DVD360_AUTH=1 (a key is "
            "created and printed), or pass --insecure if everyone on that network may use this service",
            param_hint="--host",
        )
    data_dir = (data_dir or default_data_dir()).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = DataFolderLock(data_dir).acquire()
    except AlreadyServing as exc:
        raise typer.BadParameter(str(exc), param_hint="--data-dir") from exc
    try:
        try:
            listener = listen(host, port)
        except AlreadyServing as exc:
            raise typer.BadParameter(str(exc), param_hint="--port") from exc
        lock.record(f"http://{host}:{port}")
        with listener, contextlib.ExitStack() as logs:
            _serve_on(listener, host, port, models, data_dir, auth, None if verbose else _LogFiles(data_dir, logs))
    finally:
        lock.release()


class _LogFiles:
    """<data folder>/logs/<name>.log, appended to: where a child's output goes instead of the console."""

    def __init__(self, data_dir: Path, stack: contextlib.ExitStack) -> None:
        self.folder, self.stack = data_dir / "logs", stack
        self.folder.mkdir(exist_ok=True)

    def popen(self, name: str) -> dict:
        out = self.stack.enter_context((self.folder / f"{name}.log").open("ab"))
        return {"stdout": out, "stderr": subprocess.STDOUT}

    def api_config(self) -> dict:
        """uvicorn's logging set-up with its handlers writing api.log; warnings and errors still reach the console."""
        from uvicorn.config import LOGGING_CONFIG

        config = copy.deepcopy(LOGGING_CONFIG)
        for formatter in config["formatters"].values():
            formatter["use_colors"] = False
        log = str(self.folder / "api.log")
        config["handlers"] = {
            "default": {"formatter": "default", "class": "logging.FileHandler", "filename": log},
            "access": {"formatter": "access", "class": "logging.FileHandler", "filename": log},
            "console": {"formatter": "default", "class": "logging.StreamHandler", "level": "WARNING"},
        }
        config["loggers"]["uvicorn"]["handlers"] = ["default", "console"]
        return config


def _serve_on(
    listener: socket.socket, host: str, port: int, models: Path | None, data_dir: Path, auth: bool, logs
) -> None:
    """Start Redis, the workers and the reaper, then the API on `listener`; `logs`: a _LogFiles, or None for the
    console."""
    import uvicorn

    from cli.process_group import ProcessGroup
    from cli.redis_server import RedisServerError, start_redis_server

    (data_dir / "redis").mkdir(exist_ok=True)
    redis_port = free_port()
    os.environ.update(
        DVD360_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        DVD360_STORAGE="local",
        DVD360_DATA_DIR=str(data_dir),
        DVD360_AUTH=str(auth).lower(),
        PYTHONUNBUFFERED="1",  # the children's output reaches their log files as it is written
    )
    # links and webhooks signed with a key kept beside the data, the same for every process and every restart
    os.environ.setdefault("DVD360_SIGNING_KEY", _kept_secret(data_dir / "signing-key"))
    if models is not None:
        os.environ["DVD360_MODEL_REGISTRY"] = str(models.resolve())
    else:  # load the tiny model while the worker starts, not on the first job
        os.environ.setdefault("DVD360_WARM_MODELS", "tiny")
    output = (lambda name: {}) if logs is None else logs.popen
    children = ProcessGroup()
    try:
        children.add(start_redis_server(redis_port, data_dir / "redis", **children.popen_args(), **output("redis")))
    except RedisServerError as exc:
        children.stop()
        raise typer.BadParameter(str(exc)) from exc
    try:
        children.start(worker_command(_generation_queues(), 1), **output("worker"))
        children.start(_webhook_worker_command(), **output("webhooks"))
        children.start(reaper_command(), **output("reaper"))
        from api.app import create_app

        logging = {"log_level": "info"} if logs is None else {"log_config": logs.api_config()}
        config = uvicorn.Config(create_app(), host=host, port=port, **logging)
        redis_url = os.environ["DVD360_REDIS_URL"]  # for `dvd360 keys create` or a second `dvd360 api` beside it
        access = f"API key: {_embedded_key(data_dir)}" if auth else "auth off"
        where = "" if logs is None else f", logs in {logs.folder}"
        _run_announcing(
            config, listener, f"dvd360: http://{host}:{port}  ({access}, data in {data_dir}{where}, redis {redis_url})"
        )
    finally:
        children.stop()


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def default_data_dir() -> Path:
    """DVD360_DATA_DIR, else the per-user data folder (never a folder inside the checkout)."""
    from platformdirs import user_data_path

    configured = os.environ.get("DVD360_DATA_DIR")
    return Path(configured) if configured else user_data_path("dvd360") / "serve"


def _kept_secret(path: Path) -> str:
    """A random secret made at the first start and kept in `path` (mode 0600)."""
    if not path.is_file():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32) + "\n")
    return path.read_text().strip()


def _embedded_key(data_dir: Path) -> str:
    """The embedded service's one API key: created at the first start with auth on, kept (mode 0600) in the data
    folder so a restart prints the same key, and recreated if it was revoked."""
    from api.auth import create_key, key_owner, revoke_key

    client, path = _redis(), data_dir / "api-key"
    key = path.read_text().strip() if path.is_file() else ""
    if key and key_owner(client, key) == EMBEDDED_KEY_NAME:
        return key
    revoke_key(client, EMBEDDED_KEY_NAME)
    key = create_key(client, EMBEDDED_KEY_NAME)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def _run_announcing(config, listener: socket.socket, message: str) -> None:
    """Run uvicorn on `listener`, printing `message` (the URL) once the app has started: a script may connect on
    reading it. The last line start-up prints."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started:
                typer.echo(message)

    Server(config).run(sockets=[listener])


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
    """Exit 0 when the process that runs jobs beats (the liveness probe): fresh, and ready or still within its
    warm-up budget (DVD360_WORKER_WARMUP_BUDGET_S); 1 otherwise, saying why."""
    from core.settings import get_settings
    from worker.heartbeat import heartbeat_problem

    settings = get_settings()
    if settings.heartbeat_file is None:
        typer.echo("DVD360_HEARTBEAT_FILE is not set", err=True)
        raise typer.Exit(1)
    if problem := heartbeat_problem(settings.heartbeat_file, max_age, settings.worker_warmup_budget_s):
        typer.echo(problem, err=True)
        raise typer.Exit(1)


def reaper() -> None:
    """Run the reaper: requeue or fail abandoned jobs, fail jobs whose queue message was lost, delete expired
    outputs and uploads (settings from DVD360_* variables; one per deployment is enough, more are harmless)."""
    os.execv(sys.executable, reaper_command())


def _redis():
    import redis

    from core.settings import get_settings

    return redis.Redis.from_url(get_settings().redis_url)


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Argument(help="Who the key is for (one key per name).")]) -> None:
    """Create an API key: printed once, stored only as a hash."""
    from api.auth import KeyNameTaken, create_key

    try:
        typer.echo(create_key(_redis(), name))
    except KeyNameTaken as exc:
        raise typer.BadParameter(str(exc), param_hint="NAME") from exc


@keys_app.command("list")
def keys_list() -> None:
    """The names that have a key, with when each was created (keys themselves are never stored)."""
    from api.auth import list_keys

    for record in list_keys(_redis()):
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record["created_at"])) if record["created_at"] else "?"
        typer.echo(f"{record['name']}\t{created} UTC")


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="Whose key to revoke.")]) -> None:
    """Revoke a name's key: its requests get 401 from now on (its jobs stay until they expire)."""
    from api.auth import revoke_key

    if not revoke_key(_redis(), name):
        raise typer.BadParameter(f"{name!r} has no API key; see dvd360 keys list", param_hint="NAME")
    typer.echo(f"revoked the key of {name}")
