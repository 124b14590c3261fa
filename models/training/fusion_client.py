"""Fusing four perspective captions into one panorama caption with an OpenAI-compatible chat endpoint.

Works with any server that speaks POST {base_url}/chat/completions (OpenAI, vLLM, llama.cpp, Ollama, LM Studio):
the base URL, model name and the environment variable holding the API key are settings; a local server needs
no key. Transient failures (connection errors, timeouts, 429 and 5xx) are retried with exponential backoff.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

VIEW_NAMES = ("front", "right", "left", "back")  # yaw 0, 90, -90, 180

FUSION_INSTRUCTION = (
    "You write captions for 360-degree panoramic videos. You are given four captions, each describing one "
    "90-degree view of the same panorama: front, right, left and back. Merge them into ONE concise caption "
    "(one sentence, at most 40 words) describing the whole 360-degree scene: keep the objects, places, weather, "
    "lighting and actions the views agree on or that clearly belong to the scene, mention each thing once, drop "
    "view-specific framing words (such as 'a picture of', 'in the left view'), and do not invent anything that "
    "no caption mentions. Reply with the caption only, without quotes or any other text."
)


class FusionError(RuntimeError):
    """The chat endpoint did not give a usable answer (after retries, or a non-retryable error)."""


@dataclass
class FusionSettings:
    base_url: str = "http://localhost:8000/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    retries: int = 4
    backoff_s: float = 1.0  # waits backoff, 2x backoff, 4x backoff ...
    max_backoff_s: float = 30.0
    temperature: float = 0.2
    max_tokens: int = 120


def fusion_messages(captions: list[str]) -> list[dict[str, str]]:
    if len(captions) != len(VIEW_NAMES):
        raise ValueError(f"expected {len(VIEW_NAMES)} captions (front, right, left, back), got {len(captions)}")
    views = "\n".join(f"{name}: {caption}" for name, caption in zip(VIEW_NAMES, captions, strict=True))
    return [{"role": "system", "content": FUSION_INSTRUCTION}, {"role": "user", "content": views}]


def clean_caption(text: str) -> str:
    text = " ".join(text.strip().split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


class FusionClient:
    def __init__(
        self,
        settings: FusionSettings = FusionSettings(),
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.client = client or httpx.Client(timeout=settings.timeout_s)
        self.headers = headers
        self.sleep = sleep
        self.url = settings.base_url.rstrip("/") + "/chat/completions"

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> FusionClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def fuse(self, captions: list[str]) -> str:
        s = self.settings
        body = {
            "model": s.model,
            "messages": fusion_messages(captions),
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
        }
        last: str = ""
        for attempt in range(s.retries + 1):
            if attempt:
                delay = min(s.max_backoff_s, s.backoff_s * 2 ** (attempt - 1))
                log.warning("caption fusion attempt %d failed (%s); retrying in %.1fs", attempt, last, delay)
                self.sleep(delay)
            try:
                response = self.client.post(self.url, json=body, headers=self.headers)
            except httpx.TransportError as exc:  # connection refused, timeouts, resets
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise FusionError(f"{self.url} answered HTTP {response.status_code}: {response.text[:300]}")
            try:
                text = clean_caption(response.json()["choices"][0]["message"]["content"] or "")
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                last = f"malformed answer ({exc})"
                continue
            if text:
                return text
            last = "empty caption"
        raise FusionError(f"caption fusion failed after {s.retries + 1} attempts: {last}")
