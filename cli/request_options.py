"""The request options of `dvd360 generate` and `dvd360 submit`, made from `GenerationRequest`'s fields: the same
fields, help and checks as the API's body, so a field added there is an option here. A few keep their shorter
historical names (`--frames`, `--guidance`, `--model`)."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from core.request import GenerationRequest, RequestError

OPTION_NAMES = {"num_frames": "--frames", "guidance_scale": "--guidance", "base_model": "--model"}


def option_name(field: str) -> str:
    return OPTION_NAMES.get(field, "--" + field.replace("_", "-"))


def _cli_type(annotation: Any) -> Any:
    """A type click parses; pydantic checks the value after (Literal choices, bounds), naming the option."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _cli_type(args[0]) | None
    if typing.get_origin(annotation) is typing.Literal:
        return type(args[0])
    if typing.get_origin(annotation) is list:
        return list[str] | None
    return annotation


def _parameters(exclude: set[str]) -> list[inspect.Parameter]:
    parameters = []
    for name, field in GenerationRequest.model_fields.items():
        if name in exclude:
            continue
        default = ... if field.is_required() else None if typing.get_origin(field.annotation) is list else field.default
        flag = option_name(name)
        names = f"{flag}/--no-{flag[2:]}" if field.annotation is bool else flag
        option = typer.Option(names, help=field.description or "")
        annotation = Annotated[_cli_type(field.annotation), option]
        parameters.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    return parameters


def to_request(fields: dict[str, Any]) -> GenerationRequest:
    """The typed request from the options given, or a usage error (exit code 2) naming the option to change."""
    given = {name: value for name, value in fields.items() if value is not None}
    try:
        return GenerationRequest.model_validate(given)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        raise typer.BadParameter(error["msg"], param_hint=option_name(field) if field else None) from None


def usage_error(exc: RequestError) -> typer.BadParameter:
    return typer.BadParameter(exc.message, param_hint=option_name(exc.field) if exc.field else None)


def with_request_options(exclude: set[str] = frozenset()) -> Callable[[Callable], Callable]:
    """Give a command one option per request field (minus `exclude`); it is called with `request=` the typed
    request made from them."""

    def decorate(command: Callable) -> Callable:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "request"]
        extra = _parameters(set(exclude))
        names = {p.name for p in extra}

        def run(**kwargs: Any) -> Any:
            request = to_request({name: kwargs.pop(name) for name in names})
            return command(request=request, **kwargs)

        run.__name__, run.__doc__ = command.__name__, command.__doc__
        run.__signature__ = inspect.Signature(extra + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own])
        return run

    return decorate
