"""The set-up behind `make serve` and `make test` (scripts/setup.sh, the Makefile, pyproject.toml, .gitignore):
serving installs only what serving needs, torch is the CPU build on a machine without a GPU (whatever index
the operator set, never CUDA packages), the page is built once, the test step brings a C compiler, and run
artefacts stay out of git. setup.sh runs for real, with pip, apt-get, npm and nvidia-smi replaced by stubs that
record their arguments (nothing is installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"

PYTHON_STUB = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
if args[:1] == ["-c"] and "import torch" in args[1]:
    sys.exit(print("torch 0+stub"))
if args[:2] != ["-m", "pip"]:
    os.execv({sys.executable!r}, [{sys.executable!r}, *args])
with open(os.environ["STUB_LOG"], "a") as log:
    log.write("pip " + " ".join(args[2:]) + "\\n")
if args[2] == "config":
    print(os.environ.get("STUB_PIP_CONFIG", ""))
elif "--dry-run" in args:
    resolved = [n.split("==") for n in os.environ.get("STUB_RESOLVES", "torch==2.13.0+cpu").split()]
    print(json.dumps({{"install": [{{"metadata": {{"name": n, "version": v}}}} for n, v in resolved]}}))
"""
LOGGING_STUB = '#!/bin/sh\necho "$(basename "$0") $*" >> "$STUB_LOG"\n'
GPU_STUB = '#!/bin/sh\necho "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"\n'


class Setup:
    """A copy of scripts/setup.sh in a bare repository folder, run with stubs on a PATH of only what it needs."""

    def __init__(self, tmp: Path) -> None:
        self.repo, self.bin, self.log = tmp / "repo", tmp / "bin", tmp / "calls.log"
        (self.repo / "scripts").mkdir(parents=True)
        (self.repo / "api" / "web").mkdir(parents=True)
        shutil.copy(ROOT / "scripts" / "setup.sh", self.repo / "scripts" / "setup.sh")
        self.venv = tmp / "venv"
        (self.venv / "bin").mkdir(parents=True)
        self._script(self.venv / "bin" / "python", PYTHON_STUB)
        self.bin.mkdir()
        for tool in ("dirname", "id", "grep", "basename"):
            (self.bin / tool).symlink_to(shutil.which(tool))
        for tool in ("apt-get", "npm"):
            self._script(self.bin / tool, LOGGING_STUB)

    @staticmethod
    def _script(path: Path, text: str) -> None:
        path.write_text(text)
        path.chmod(0o755)

    def with_gpu(self) -> Setup:
        self._script(self.bin / "nvidia-smi", GPU_STUB)
        return self

    def run(self, *steps: str, **env: str) -> subprocess.CompletedProcess:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TORCH_", "DVD360_", "CC"))}
        environment = {**base, "PATH": str(self.bin), "VENV": str(self.venv), "STUB_LOG": str(self.log), **env}
        return subprocess.run(
            ["/bin/bash", str(self.repo / "scripts" / "setup.sh"), *steps],
            env=environment, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def setup(tmp_path) -> Setup:
    return Setup(tmp_path)


def torch_installs(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("pip install -q") and "torch==" in c]


def test_serve_installs_torch_and_the_serving_extras_only(setup) -> None:
    done = setup.run("serve")
    assert done.returncode == 0, done.stderr
    calls = setup.calls()
    installs = [c for c in calls if c.startswith("pip install -q") and "--upgrade pip" not in c]
    assert installs == [f"pip install -q {CPU_INDEX} torch==2.13.0", "pip install -q -e .[embedded]"], calls
    assert not [c for c in calls if c.startswith(("apt-get", "npm"))]  # no chromium, no page build here


def test_without_a_gpu_a_torch_that_brings_cuda_is_refused_before_installing(setup) -> None:
    done = setup.run("serve", STUB_RESOLVES="torch==2.13.0 nvidia-cublas-cu12==12.8.4.1 triton==3.5.0")
    assert done.returncode == 1
    assert "nvidia-cublas-cu12==12.8.4.1" in done.stderr and "TORCH_INDEX_URL=" in done.stderr
    assert torch_installs(setup.calls()) == [] and "-e .[embedded]" not in setup.log.read_text()


@pytest.mark.parametrize(
    "env",
    [{"PIP_EXTRA_INDEX_URL": "file:///srv/wheels"}, {"PIP_INDEX_URL": "https://mirror.example/simple"},
     {"PIP_FIND_LINKS": "/opt/wheels"}, {"STUB_PIP_CONFIG": "global.extra-index-url='file:///srv/wheels'"}],
    ids=["PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_FIND_LINKS", "pip.conf"],
)  # fmt: skip
def test_the_operators_pip_index_settings_are_honoured(setup, env) -> None:
    assert setup.run("serve", **env).returncode == 0
    assert torch_installs(setup.calls()) == ["pip install -q torch==2.13.0"]


def test_torch_index_url_and_spec_win(setup) -> None:
    done = setup.run(
        "serve", TORCH_INDEX_URL="https://download.pytorch.org/whl/cu128", PIP_EXTRA_INDEX_URL="file:///srv/wheels",
        DVD360_TORCH_SPEC="torch==2.12.1", STUB_RESOLVES="torch==2.12.1+cpu",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cuda_index = "--index-url https://download.pytorch.org/whl/cu128"
    assert torch_installs(setup.calls()) == [f"pip install -q {cuda_index} torch==2.12.1"]


def test_with_a_gpu_torch_comes_from_pypi_as_it_is(setup) -> None:
    assert setup.with_gpu().run("serve").returncode == 0
    calls = setup.calls()
    assert torch_installs(calls) == ["pip install -q torch==2.13.0"]
    assert not [c for c in calls if "--dry-run" in c]


def test_the_test_step_brings_the_test_tools_and_a_c_compiler(setup) -> None:
    done = setup.run("test")
    assert done.returncode == 0, done.stderr
    calls = setup.calls()
    assert "apt-get install -y -qq --no-install-recommends ffmpeg libimage-exiftool-perl chromium gcc" in calls, calls
    assert "pip install -q -e .[dev,train]" in calls
    assert any(c.startswith("pip install -q --upgrade --target") and "openapi-python-client==" in c for c in calls)


def test_the_page_step_installs_node_packages_then_builds(setup) -> None:
    assert setup.run("page").returncode == 0
    assert setup.calls() == [
        "npm ci --no-audit --no-fund --loglevel=error", "npm run build --silent"
    ]  # fmt: skip


def make_dry_run(target: str, tmp_path) -> list[str]:
    """The commands `make TARGET` would run on a fresh machine (no virtual environment, page not built)."""
    done = subprocess.run(
        ["make", "-n", "-B", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_make_serve_runs_the_serving_steps_and_builds_the_page_once(tmp_path) -> None:
    lines = make_dry_run("serve", tmp_path)
    steps = [line for line in lines if "setup.sh" in line]
    assert steps == ["bash scripts/setup.sh serve", "bash scripts/setup.sh page"], lines
    assert not [line for line in lines if "npm" in line]  # only the page step builds it
    test_steps = [line for line in make_dry_run("test", tmp_path) if "setup.sh" in line]
    assert test_steps == ["bash scripts/setup.sh serve", "bash scripts/setup.sh test", "bash scripts/setup.sh page"]


def test_ci_runs_the_readmes_test_command_with_ci_set() -> None:
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-1] == "exec make test"
    assert "export CI=true" in lines


def test_no_setuptools_deprecation_warnings() -> None:
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert [str(w.message).splitlines()[0] for w in caught] == []


def test_serving_extras_hold_no_test_tools() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def closure(name: str) -> set[str]:
        found = set()
        for requirement in extras[name]:
            if requirement.startswith("dvd360["):
                found |= set().union(*(closure(extra) for extra in requirement[7:-1].split(",")))
            else:
                found.add(requirement)
        return found

    serving = " ".join(closure("embedded")).lower()
    for tool in ("playwright", "schemathesis", "pip-audit", "hadolint", "pytest", "ruff", "tensorboard"):
        assert tool not in serving


def test_run_artefacts_are_ignored_by_git() -> None:
    paths = [".schemathesis/report.json", ".hypothesis/examples/x", "test-artifacts/serve.log", ".coverage"]
    done = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.stdout.splitlines() == paths
