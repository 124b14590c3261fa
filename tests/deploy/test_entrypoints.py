"""The deployment files call the real program: every `dvd360 ...` command in the Dockerfiles, compose and k8s
parses against the real CLI, and every DVD360_* variable they set is a real setting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cli.main import app
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _k8s_docs() -> list[dict]:
    return [
        d
        for p in sorted((ROOT / "k8s").rglob("*.yaml"))
        if "schemas" not in p.parts
        for d in yaml.safe_load_all(p.read_text())
        if d
    ]


def _commands() -> list[list[str]]:
    found = []
    for dockerfile in (ROOT / "docker").glob("*.Dockerfile"):
        found += [json.loads(m) for m in re.findall(r"(?:CMD|HEALTHCHECK[^\[]*CMD) (\[.*\])", dockerfile.read_text())]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    found += [s["command"] for s in compose["services"].values() if isinstance(s.get("command"), list)]

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "command" and isinstance(value, list):
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(_k8s_docs())
    return [c for c in found if c and c[0] == "dvd360"]


def _env_names() -> set[str]:
    text = "\n".join(
        [(ROOT / "docker-compose.yml").read_text(), (ROOT / ".env.example").read_text()]
        + [p.read_text() for p in (ROOT / "docker").glob("*.Dockerfile")]
        + [p.read_text() for p in (ROOT / "k8s").rglob("*.yaml") if "schemas" not in p.parts]
    )
    return set(re.findall(r"\bDVD360_[A-Z0-9_]*[A-Z0-9]\b", text))


def parse(args: list[str]) -> int:
    """Exit code of parsing `dvd360 ARGS --help`: 0 when the command and its options exist (click parses every
    option before the eager --help prints and exits), 2 for an unknown command or option."""
    return CliRunner().invoke(app, [*args, "--help"]).exit_code


def test_deployment_commands_exist() -> None:
    commands = _commands()
    assert {c[1] for c in commands} >= {"api", "worker", "worker-alive"}
    for command in commands:
        assert parse(command[1:]) == 0, command


def test_the_parser_check_catches_a_wrong_option() -> None:
    assert parse(["worker", "--gpus", "1"]) == 2
    assert parse(["workers"]) == 2


def test_deployment_variables_are_settings() -> None:
    names = _env_names()
    fields = {f"DVD360_{name.upper()}" for name in Settings.model_fields}
    assert names, "the deployment files set no DVD360_ variables?"
    assert names <= fields, f"not settings: {sorted(names - fields)}"
