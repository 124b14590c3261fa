"""What the service accepts: a request resolved against the model it names (core/request.py), within the server's
height cap, the workers' time limit (its estimated cost) and with a webhook the workers may call. The API calls this
before it stores anything; `dvd360 generate` runs the same resolution without the service's limits."""

from __future__ import annotations

from core.cost import cost_refusal
from core.request import GenerationRequest, RequestError, find_model
from core.settings import Settings
from core.webhook_targets import webhook_target_error
from models.registry import ModelRegistry


def admit(request: GenerationRequest, registry: ModelRegistry, settings: Settings) -> GenerationRequest:
    """The resolved request, or RequestError naming the field (None: its cost) and what to change."""
    spec = find_model(registry, request.base_model)
    resolved = request.resolve(spec, server_max_height=settings.max_height)
    if reason := cost_refusal(resolved, spec, settings):  # it would die at the time limit
        raise RequestError(None, reason)
    if resolved.webhook_url and (reason := webhook_target_error(resolved.webhook_url, settings.webhook_allow_private)):
        raise RequestError("webhook_url", reason)
    return resolved
