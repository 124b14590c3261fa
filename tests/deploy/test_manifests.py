"""Offline validation of the deployment files with the real validators (no Docker engine or cluster here):
hadolint on the Dockerfiles, `docker-compose config`, `kubernetes-validate --strict` on every manifest and
rendered overlay, and the KEDA ScaledObjects against the CRD schema kept in k8s/schemas/."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
K8S = ROOT / "k8s"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=60)


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml" and "schemas" not in p.parts)


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def rendered_overlay(overlay: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (for its built-in kustomize) is not installed: overlays not rendered")
    done = run(kubectl, "kustomize", overlay)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


# --- Dockerfiles -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", sorted((ROOT / "docker").glob("*.Dockerfile")), ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    done = run(BIN / "hadolint", dockerfile)
    assert done.returncode == 0, done.stdout + done.stderr


def test_images_run_as_non_root_and_bake_no_weights() -> None:
    for dockerfile in (ROOT / "docker").glob("*.Dockerfile"):
        text = dockerfile.read_text()
        assert "\nUSER 10001" in text, f"{dockerfile.name} must drop root"
        assert "HEALTHCHECK" in text, f"{dockerfile.name} needs a healthcheck"
        assert "weights" not in [line.split()[1] for line in text.splitlines() if line.startswith("COPY ")]
    assert "torch" not in (ROOT / "docker/api.Dockerfile").read_text().split("FROM", 1)[1].split("CMD")[0].lower()


# --- docker-compose ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    done = run(BIN / "docker-compose", "-f", ROOT / "docker-compose.yml", "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_compose_validates_quietly() -> None:
    done = run(BIN / "docker-compose", "-f", ROOT / "docker-compose.yml", "config", "-q")
    assert done.returncode == 0, done.stderr


def test_compose_wiring(compose: dict) -> None:
    services = compose["services"]
    assert set(services) >= {"redis", "minio", "minio-init", "api", "worker"}
    assert "--appendonly" in services["redis"]["command"]
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb --ignore-existing" in " ".join(services["minio-init"]["command"])
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["count"] == 1 and gpu["capabilities"] == ["gpu"]
    assert all(v["read_only"] for v in services["worker"]["volumes"] if v["target"] == "/weights")


def test_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    """The validator really validates: a misspelt key fails."""
    broken = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    broken["services"]["api"]["restartt"] = "always"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert run(BIN / "docker-compose", "-f", path, "config", "-q", cwd=tmp_path).returncode != 0


# --- Kubernetes --------------------------------------------------------------------------------------------


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess:
    return run(BIN / "kubernetes-validate", "--strict", path)


@pytest.mark.parametrize("manifest", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_is_strictly_valid(manifest: Path) -> None:
    done = kubernetes_validate(manifest)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_rendered_overlay_is_strictly_valid(overlay: Path, tmp_path: Path) -> None:
    docs = rendered_overlay(overlay)
    path = tmp_path / f"{overlay.name}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    done = kubernetes_validate(path)
    assert done.returncode == 0, done.stdout + done.stderr
    for doc in docs:
        if doc["kind"] == "ScaledObject":
            validate_scaled_object(doc)


def test_strict_validation_catches_a_misspelt_field(tmp_path: Path) -> None:
    doc = documents(K8S / "base/api.yaml")[0]
    doc["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"periodSeconds": 5}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert kubernetes_validate(path).returncode != 0


def strict_schema(schema: dict) -> dict:
    """The CRD's schema with unknown fields forbidden, as the API server's strict field validation does."""
    schema = copy.deepcopy(schema)

    def close(node: dict) -> None:
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for child in node.get("properties", {}).values():
            close(child)
        if isinstance(node.get("items"), dict):
            close(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            close(node["additionalProperties"])

    close(schema)
    # metadata is validated by the API server itself, not by the CRD schema
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def keda_schema() -> dict:
    crd = yaml.safe_load((K8S / "schemas/keda.sh_scaledobjects.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return strict_schema(version["schema"]["openAPIV3Schema"])


def validate_scaled_object(doc: dict) -> None:
    assert doc["apiVersion"] == "keda.sh/v1alpha1"
    jsonschema.validate(doc, keda_schema())


def scaled_objects() -> list[dict]:
    return [d for p in manifest_files() for d in documents(p) if d["kind"] == "ScaledObject"]


def test_scaled_objects_match_the_keda_crd() -> None:
    objects = scaled_objects()
    assert objects, "one ScaledObject per base-model queue expected"
    for doc in objects:
        validate_scaled_object(doc)


def test_keda_schema_check_catches_mistakes() -> None:
    doc = scaled_objects()[0]
    typo = copy.deepcopy(doc)
    typo["spec"]["minReplicas"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validate_scaled_object(typo)
    no_triggers = copy.deepcopy(doc)
    del no_triggers["spec"]["triggers"]
    with pytest.raises(jsonschema.ValidationError):
        validate_scaled_object(no_triggers)


def test_each_worker_deployment_is_scaled_on_its_own_queue() -> None:
    docs = [d for p in manifest_files() for d in documents(p)]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    workers = {d["metadata"]["name"]: d for d in deployments if "worker" in d["metadata"]["name"]}
    assert workers
    for scaled in scaled_objects():
        worker = workers[scaled["spec"]["scaleTargetRef"]["name"]]
        model = worker["metadata"]["labels"]["dvd360/base-model"]
        assert scaled["spec"]["triggers"][0]["metadata"]["listName"] == f"gen.{model}"
        pod = worker["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        assert pod["terminationGracePeriodSeconds"] >= 600
