"""The kustomize base has a manifest for every service the launcher runs, and the Dockerfile builds each
one's image from its own dependency group (rendering and validation: tests/packaging/test_manifests.py)."""

from pathlib import Path

import pytest
import yaml

from services.launcher.settings import DEFAULT_SERVICES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BASE = DEPLOY / "k8s" / "base"


def test_the_base_lists_a_manifest_for_every_service_and_no_other() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    listed = {Path(p).stem for p in kustomization["resources"] if p.startswith("services/")}
    assert listed == set(DEFAULT_SERVICES) == {p.stem for p in (BASE / "services").glob("*.yaml")}


@pytest.mark.parametrize("service", DEFAULT_SERVICES)
def test_each_service_runs_its_own_module_from_its_own_image(service: str) -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((BASE / "services" / f"{service}.yaml").read_text())}
    assert set(docs) == {"Deployment", "Service", "PodDisruptionBudget"}
    spec = docs["Deployment"]["spec"]["template"]["spec"]
    (main,) = spec["containers"]
    assert main["command"] == ["python", "-m", f"services.{service}"]
    assert main["image"] == f"likeness-{service}" and spec["initContainers"][0]["image"] == main["image"]


def test_the_dockerfile_installs_one_service_group_and_runs_as_the_manifests_user() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'deploy/install-service.sh "$SERVICE"' in dockerfile
    # runAsUser 10001 in the manifests (pod-defaults.yaml) must be the image's own user.
    assert "--uid 10001" in dockerfile and "USER 10001" in dockerfile
