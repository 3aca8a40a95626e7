"""The Kubernetes manifests parse, and every service has a Deployment running its own module."""

from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
SERVICES = ("gateway", "chat", "planner", "renderer", "facecheck", "delivery")


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_deployment_with_probes(service: str) -> None:
    docs = list(yaml.safe_load_all((DEPLOY / f"{service}.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", f"services.{service}"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert any(d["kind"] == "Service" for d in docs)
