"""Renders the Kubernetes overlays (`kubectl kustomize`, offline) and indexes what the result holds."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
KUBECTL = shutil.which("kubectl")
WORKLOADS = ("Deployment", "StatefulSet", "Job")

Doc = dict[str, Any]


def render(overlay: str) -> list[Doc]:
    """Every object `kubectl kustomize deploy/k8s/overlays/<overlay>` prints; a clear error if it fails."""
    assert KUBECTL is not None
    result = subprocess.run([KUBECTL, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_spec(doc: Doc) -> Doc:
    return doc["spec"]["template"]["spec"]


def containers(doc: Doc) -> Iterator[Doc]:
    """Every container of a workload, init containers included."""
    spec = pod_spec(doc)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


@dataclass
class Index:
    """Objects by kind and name, and the names other objects make at run time (operators, controllers)."""

    docs: list[Doc]
    by_kind: dict[str, dict[str, Doc]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for doc in self.docs:
            self.by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    def names(self, kind: str) -> set[str]:
        return set(self.by_kind.get(kind, {}))

    def of(self, kind: str) -> list[Doc]:
        return list(self.by_kind.get(kind, {}).values())

    def secrets(self) -> set[str]:
        """Rendered Secrets, those External Secrets make, CloudNativePG's `<cluster>-app`, cert-manager's TLS."""
        made = self.names("Secret")
        made |= {es["spec"].get("target", {}).get("name") or es["metadata"]["name"] for es in self.of("ExternalSecret")}
        made |= {f"{cluster['metadata']['name']}-app" for cluster in self.of("Cluster")}
        for ingress in self.of("Ingress"):
            if "cert-manager.io/cluster-issuer" in ingress["metadata"].get("annotations", {}):
                made |= {tls["secretName"] for tls in ingress["spec"].get("tls", [])}
        return made

    def services(self) -> set[str]:
        """Rendered Services and the `<cluster>-rw` Service CloudNativePG makes."""
        return self.names("Service") | {f"{c['metadata']['name']}-rw" for c in self.of("Cluster")}

    def config(self) -> dict[str, str]:
        (config,) = [cm for name, cm in self.by_kind["ConfigMap"].items() if name.startswith("likeness-config")]
        return config["data"]


def references(doc: Doc) -> Iterator[tuple[str, str]]:
    """(kind, name) of every ConfigMap, Secret, PVC and ServiceAccount a workload's pods use."""
    spec = pod_spec(doc)
    if "serviceAccountName" in spec:
        yield "ServiceAccount", spec["serviceAccountName"]
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"]
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"]
        if "persistentVolumeClaim" in volume:
            yield "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]
    for container in containers(doc):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                yield "ConfigMap", source["configMapRef"]["name"]
            if "secretRef" in source:
                yield "Secret", source["secretRef"]["name"]
        for env in container.get("env", []):
            value_from = env.get("valueFrom", {})
            if "configMapKeyRef" in value_from:
                yield "ConfigMap", value_from["configMapKeyRef"]["name"]
            if "secretKeyRef" in value_from:
                yield "Secret", value_from["secretKeyRef"]["name"]


def image_tag(image: str) -> str | None:
    """The tag of `registry/path/name:tag` (a registry port is not a tag); None when there is none."""
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last and "@" not in last else None
