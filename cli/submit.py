"""`dvd360 submit`: send a generation job to a running service (any deployment of the HTTP API) and, with --wait,
follow its event stream with a progress bar, then download the outputs. For people who script against a server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from cli.request_options import with_request_options
from core.request import GenerationRequest
from models.media.flow_kinds import FLOW_KINDS

RECONNECT_S = 2
FINAL = ("succeeded", "failed", "canceled")


def register(app: typer.Typer) -> None:
    app.command()(submit)


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str | None, str, dict]]:
    """(id, type, data) for each Server-Sent Event in a stream of lines; comments (keep-alives) are skipped."""
    event_id, event_type, data = None, "message", []
    for line in lines:
        if not line:
            if data:
                yield event_id, event_type, json.loads("\n".join(data))
            event_type, data = "message", []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event_id = value
        elif name == "event":
            event_type = value
        elif name == "data":
            data.append(value)


def follow(client, job_id: str, show_progress: bool) -> dict:
    """Read the job's events to the end (reconnecting with Last-Event-ID after a network error); the final event."""
    import httpx
    from tqdm import tqdm

    last_id, bar = None, None
    try:
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with client.stream(
                    "GET", f"/jobs/{job_id}/events", headers=headers, timeout=httpx.Timeout(30, read=60)
                ) as r:
                    r.raise_for_status()
                    for event_id, kind, data in sse_events(r.iter_lines()):
                        last_id = event_id or last_id
                        if kind == "progress" and show_progress:
                            bar = bar or tqdm(total=data["total"], desc="denoising", unit="step")
                            bar.update(data["step"] - bar.n)
                        elif kind == "queued" and bar is None:
                            typer.echo(f"queued (position {data['queue_position']})", err=True)
                        elif kind in FINAL:
                            return {"type": kind, **data}
            except httpx.TransportError as exc:
                typer.echo(f"event stream interrupted ({exc}); reconnecting", err=True)
                time.sleep(RECONNECT_S)
    finally:
        if bar is not None:
            bar.close()


OUTPUTS = {"video_url": "mp4", "poster_url": "poster.jpg", "views_url": "views.jpg"}
DEFAULT_SERVER = "http://127.0.0.1:8000"  # where `dvd360 serve` listens by default


def local_server() -> str:
    """The `dvd360 serve` running on this machine's default data folder (its lock file names its URL), else the
    address serve listens on by default."""
    from cli.serve import default_data_dir
    from cli.single_instance import serving_url

    return serving_url(default_data_dir()) or DEFAULT_SERVER


def download(client, job: dict, folder: Path) -> dict[str, str]:
    """Each output as `<job id>.<name>` in `folder`: names never collide with earlier results."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = {}
    for field, suffix in OUTPUTS.items():
        if url := job["outputs"].get(field):
            path = folder / f"{job['id']}.{suffix}"
            with client.stream("GET", url) as r:
                r.raise_for_status()
                with path.open("wb") as f:
                    for chunk in r.iter_bytes():
                        f.write(chunk)
            saved[field.removesuffix("_url")] = str(path)
    return saved


def form_fields(body: dict) -> list[tuple[str, str]]:
    """The request as multipart form fields (a list field is repeated)."""
    fields = []
    for name, value in body.items():
        for item in value if isinstance(value, list) else [value]:
            fields.append((name, json.dumps(item) if not isinstance(item, str) else item))
    return fields


@with_request_options(exclude={"flow_id", "deadline_s"})
def submit(
    request: GenerationRequest,
    server: Annotated[
        str | None,
        typer.Option(help="The service's base URL (default: the local `dvd360 serve`).", envvar="DVD360_SERVER"),
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="API key (X-API-Key).", envvar="DVD360_API_KEY")] = None,
    flow: Annotated[Path | None, typer.Option(help="Motion file, uploaded with the request.", exists=True)] = None,
    flow_kind: Annotated[str | None, typer.Option(help=f"One of {', '.join(FLOW_KINDS)}; guessed if omitted.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job to its end and download the outputs.")] = False,
    out: Annotated[Path, typer.Option(help="Folder for the outputs (with --wait), named by job id.")] = Path("."),
    cancel_after: Annotated[str | None, typer.Option(help="Deadline: 30s, 5m, 1h30m or seconds.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (with --wait).")] = True,
) -> None:
    """Submit a job to a running service (default: the local `dvd360 serve`); prints the job, or with --wait follows
    it and prints a JSON summary after downloading its files. Options left out take the model's defaults."""
    import httpx

    from cli.generate import guess_flow_kind

    server = server or local_server()
    body = request.model_dump(mode="json", exclude_unset=True)
    headers = {"X-API-Key": api_key} if api_key else {}
    if cancel_after:
        headers["Cancel-After"] = cancel_after
    with httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=60) as client:
        try:
            if flow is None:
                answer = client.post("/generate", json=body)
            else:
                kind = flow_kind or guess_flow_kind(flow)
                with flow.open("rb") as file:
                    data = [*form_fields(body), ("kind", kind)]
                    answer = client.post("/generate", data=data, files={"file": (flow.name, file)})
        except httpx.TransportError as exc:
            raise typer.BadParameter(f"cannot reach {server}: {exc}", param_hint="--server") from exc
        if answer.status_code >= 400:
            typer.echo(f"the service refused the job ({answer.status_code}): {answer.text}", err=True)
            raise typer.Exit(1)
        job = answer.json()
        if not wait:
            typer.echo(json.dumps(job))
            return
        final = follow(client, job["id"], progress)
        job = final["job"]
        summary = {"id": job["id"], "state": job["state"], "seed": job.get("seed")}
        if final["type"] == "succeeded":
            summary["files"] = download(client, job, out)
        else:
            summary.update(error=job.get("error"), error_type=job.get("error_type"))
        typer.echo(json.dumps(summary))
        if final["type"] != "succeeded":
            raise typer.Exit(1)
