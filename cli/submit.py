"""`dvd360 submit`: send a generation job to a running service (any deployment of the HTTP API) and, with --wait,
follow its event stream with a progress bar, then download the outputs. For people who script against a server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

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


def download(client, outputs: dict, folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = {"video_url": "video.mp4", "poster_url": "poster.jpg", "preview_url": "preview.jpg"}
    saved = {}
    for field, name in names.items():
        if url := outputs.get(field):
            with client.stream("GET", url) as r:
                r.raise_for_status()
                with (folder / name).open("wb") as f:
                    for chunk in r.iter_bytes():
                        f.write(chunk)
            saved[name.split(".")[0]] = str(folder / name)
    return saved


def submit(
    prompt: Annotated[str, typer.Option(help="What the panorama shows.")],
    server: Annotated[str, typer.Option(help="The service's base URL.", envvar="DVD360_SERVER")],
    api_key: Annotated[str | None, typer.Option(help="API key (X-API-Key).", envvar="DVD360_API_KEY")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job to its end and download the outputs.")] = False,
    out: Annotated[Path, typer.Option(help="Folder for the outputs (with --wait).")] = Path("."),
    model: Annotated[str, typer.Option(help="Base model (GET /models).")] = "tiny",
    negative_prompt: Annotated[str, typer.Option(help="What to steer away from.")] = "",
    frames: Annotated[int | None, typer.Option(min=1, help="Default: the model's.")] = None,
    height: Annotated[int | None, typer.Option(min=64, help="Default: the model's (width = 2 x height).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Default: the model's.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random if omitted.")] = None,
    cancel_after: Annotated[str | None, typer.Option(help="Deadline: 30s, 5m, 1h30m or seconds.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (with --wait).")] = True,
) -> None:
    """Submit a job to a running service; prints the job (or, with --wait, a JSON summary after downloading)."""
    import httpx

    body = {"prompt": prompt, "negative_prompt": negative_prompt, "base_model": model}
    optional = {"num_frames": frames, "height": height, "steps": steps, "seed": seed}
    body.update({k: v for k, v in optional.items() if v is not None})
    headers = {"X-API-Key": api_key} if api_key else {}
    if cancel_after:
        headers["Cancel-After"] = cancel_after
    with httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=60) as client:
        try:
            answer = client.post("/generate", json=body)
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
            summary["files"] = download(client, job["outputs"], out)
        else:
            summary.update(error=job.get("error"), error_type=job.get("error_type"))
        typer.echo(json.dumps(summary))
        if final["type"] != "succeeded":
            raise typer.Exit(1)
