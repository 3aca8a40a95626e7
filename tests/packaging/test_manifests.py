"""The Kubernetes overlays render offline and would apply: core objects pass the Kubernetes schema (strict,
the newest version kubernetes-validate knows), custom resources (KEDA, CloudNativePG, External Secrets,
Prometheus Operator) pass structural checks of ours, and everything one object names exists in the set."""

from __future__ import annotations

import base64
import copy
import importlib
import inspect
import os
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from contracts.subjects import COMMANDS_STREAM
from services.facecheck.handlers import CONSUMER as FACECHECK_CONSUMER
from services.launcher.settings import DEFAULT_SERVICES
from services.renderer.service import CONSUMER as RENDERER_CONSUMER
from services.runtime.settings import RuntimeSettings
from tests.packaging.k8s_render import K8S, KUBECTL, OVERLAYS, WORKLOADS, Index, containers, image_tag, pod_spec, \
    references, render

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (Debian: apt-get install kubectl)")

K8S_VERSION = kubernetes_validate.latest_version()
CUSTOM_KINDS = {"ScaledObject": "keda.sh/v1alpha1", "Cluster": "postgresql.cnpg.io/v1",
                "ExternalSecret": "external-secrets.io/v1", "PrometheusRule": "monitoring.coreos.com/v1"}
SSE_ANNOTATIONS = {"nginx.ingress.kubernetes.io/proxy-buffering": "off",
                   "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, Index]:
    return request.param, Index(render(request.param))


def schema_errors(doc: dict) -> list[str]:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{doc['kind']}/{doc['metadata']['name']}: {err.message} at {list(err.path)}"]
    return []


def test_core_objects_pass_the_kubernetes_schema(overlay: tuple[str, Index]) -> None:
    _, index = overlay
    core = [doc for doc in index.docs if doc["kind"] not in CUSTOM_KINDS]
    assert {doc["kind"] for doc in core} >= {"Deployment", "StatefulSet", "Job", "Service", "Ingress",
                                             "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"}
    assert [error for doc in core for error in schema_errors(doc)] == []


def test_the_schema_check_catches_a_broken_object(overlay: tuple[str, Index]) -> None:
    _, index = overlay
    broken = copy.deepcopy(index.by_kind["Deployment"]["likeness-gateway"])
    pod_spec(broken)["containers"][0]["ports"][0]["containerPort"] = "eight thousand"
    pod_spec(broken)["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/healthz"
    assert len(schema_errors(broken)) == 1


def test_custom_resources_are_well_formed(overlay: tuple[str, Index]) -> None:
    name, index = overlay
    unknown = {doc["kind"] for doc in index.docs} - set(CUSTOM_KINDS) - set(_core_kinds())
    assert unknown == set(), "a kind neither the schema nor our own checks cover"
    for doc in index.docs:
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["apiVersion"] == CUSTOM_KINDS[doc["kind"]], doc["metadata"]["name"]
    for so in index.of("ScaledObject"):
        spec = so["spec"]
        assert spec["scaleTargetRef"]["name"] in index.names("Deployment")
        assert 0 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        assert spec["fallback"]["replicas"] >= 1, "a scaler that cannot read its consumer still leaves a pod"
        for trigger in spec["triggers"]:
            assert trigger["type"] == "nats-jetstream"
            assert {"natsServerMonitoringEndpoint", "stream", "consumer", "lagThreshold"} <= set(trigger["metadata"])
    for cluster in index.of("Cluster"):
        assert cluster["spec"]["instances"] == (3 if name == "prod" else 1)
        assert cluster["spec"]["storage"]["size"] and cluster["spec"]["bootstrap"]["initdb"]["database"]
    for es in index.of("ExternalSecret"):
        assert es["spec"]["secretStoreRef"]["name"] and es["spec"]["target"]["name"]
        assert es["spec"].get("data") or es["spec"].get("dataFrom")
    for rule in index.of("PrometheusRule"):
        for group in rule["spec"]["groups"]:
            assert group["name"] and all(("alert" in r or "record" in r) and r["expr"] for r in group["rules"])
    assert index.by_kind["ConfigMap"]["likeness-dashboard"]["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_everything_an_object_names_exists(overlay: tuple[str, Index]) -> None:
    _, index = overlay
    made = {"ConfigMap": index.names("ConfigMap"), "Secret": index.secrets(),
            "PersistentVolumeClaim": index.names("PersistentVolumeClaim"),
            "ServiceAccount": index.names("ServiceAccount") | {"default"}}
    missing = [f"{doc['kind']}/{doc['metadata']['name']} -> {kind}/{ref}" for kind_docs in WORKLOADS
               for doc in index.of(kind_docs) for kind, ref in references(doc) if ref not in made[kind]]
    assert missing == [], "references to objects nobody makes"
    for ingress in index.of("Ingress"):
        for rule in ingress["spec"]["rules"]:
            assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} <= index.services()
    targets = [hpa["spec"]["scaleTargetRef"] for hpa in index.of("HorizontalPodAutoscaler")]
    targets += [so["spec"]["scaleTargetRef"] for so in index.of("ScaledObject")]
    assert all(target["name"] in index.names(target.get("kind", "Deployment")) for target in targets)
    # The URLs in the settings: each ComfyUI backend is a pod of the StatefulSet behind its headless Service.
    for url in filter(None, index.config()["LIKENESS_COMFYUI_URLS"].split(",")):
        pod, service = urlsplit(url).hostname.split(".")[:2]
        statefulset = index.by_kind["StatefulSet"][pod.rsplit("-", 1)[0]]
        assert statefulset["spec"]["serviceName"] == service and service in index.services()
        assert int(pod.rsplit("-", 1)[1]) < statefulset["spec"]["replicas"], f"{url}: no such backend pod"
    # NATS is the Helm release "nats" (deploy/k8s/nats/values.yaml), the one service outside this set.
    assert urlsplit(index.config()["LIKENESS_NATS_URL"]).hostname == "nats"


def test_every_container_is_probed_limited_and_locked_down(overlay: tuple[str, Index]) -> None:
    _, index = overlay
    for kind in WORKLOADS:
        for doc in index.of(kind):
            where = f"{kind}/{doc['metadata']['name']}"
            assert pod_spec(doc).get("securityContext", {}).get("runAsNonRoot") is True, where
            assert pod_spec(doc).get("automountServiceAccountToken") is False, where
            for container in containers(doc):
                context, resources = container.get("securityContext", {}), container.get("resources", {})
                assert context.get("runAsNonRoot") and context.get("readOnlyRootFilesystem"), where
                assert context.get("allowPrivilegeEscalation") is False, where
                assert context.get("capabilities", {}).get("drop") == ["ALL"], where
                assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
                assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{where}: requests"
                assert "memory" in resources.get("limits", {}), f"{where}: memory limit"
            if kind != "Job":
                main = pod_spec(doc)["containers"][0]
                assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(main), where
    facecheck = pod_spec(index.by_kind["Deployment"]["likeness-facecheck"])["containers"][0]["startupProbe"]
    assert facecheck["periodSeconds"] * facecheck["failureThreshold"] >= 300, "room for the face models to load"


def test_images_come_from_a_registry_with_a_release_tag(overlay: tuple[str, Index]) -> None:
    _, index = overlay
    for kind in WORKLOADS:
        for doc in index.of(kind):
            for container in containers(doc):
                image = container["image"]
                host = image.split("/", 1)[0] if "/" in image else ""
                assert "." in host or ":" in host or host == "localhost", f"{image}: no registry"
                assert image_tag(image) not in (None, "latest"), f"{image}: no release tag"


def test_each_service_runs_its_own_lean_image_after_the_release_migrations(overlay: tuple[str, Index]) -> None:
    _, index = overlay
    (job,) = index.of("Job")
    release = image_tag(pod_spec(job)["containers"][0]["image"])
    assert job["metadata"]["name"] == f"likeness-migrate-{release}", "the Job's name carries the release"
    assert pod_spec(job)["containers"][0]["command"][:3] == ["likeness", "migrate", "--provision"]
    for service in DEFAULT_SERVICES:
        spec = pod_spec(index.by_kind["Deployment"][f"likeness-{service}"])
        (wait,), (main,) = spec["initContainers"], spec["containers"]
        assert main["command"] == ["python", "-m", f"services.{service}"]
        assert main["image"].rsplit("/", 1)[-1] == f"likeness-{service}:{release}"
        assert wait["image"] == main["image"] and wait["command"][:3] == ["likeness", "migrate", "--wait"]


def test_only_the_gateway_takes_traffic_from_outside(overlay: tuple[str, Index]) -> None:
    _, index = overlay
    policies = index.of("NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "likeness"}}
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} and not p["spec"].get("ingress")]
    assert deny, "a default deny over every Likeness pod"
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            sources = {s.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                       for s in rule["from"]} - {None, "monitoring"}
            if sources:
                assert sources == {"ingress-nginx"}
                assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    (ingress,) = index.of("Ingress")
    assert SSE_ANNOTATIONS.items() <= ingress["metadata"]["annotations"].items()


def test_every_workload_has_a_disruption_budget(overlay: tuple[str, Index]) -> None:
    _, index = overlay
    budgets = [pdb["spec"]["selector"]["matchLabels"] for pdb in index.of("PodDisruptionBudget")]
    for kind in ("Deployment", "StatefulSet"):
        for doc in index.of(kind):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert any(selector.items() <= labels.items() for selector in budgets), doc["metadata"]["name"]


def test_prod_replicates_streams_stores_blobs_in_s3_and_scales_the_renderer_to_zero() -> None:
    index = Index(render("prod"))
    config = index.config()
    assert config["LIKENESS_STREAM_REPLICAS"] == "3" and config["LIKENESS_BLOB_STORE"] == "s3"
    assert config["LIKENESS_S3_BUCKET"] and config["LIKENESS_S3_REGION"] and config["LIKENESS_S3_ENDPOINT_URL"]
    assert index.by_kind["ScaledObject"]["likeness-renderer"]["spec"]["minReplicaCount"] == 0
    assert index.names("Secret") == set(), "prod secrets come by reference, never in the rendered set"
    assert index.by_kind["Ingress"]["likeness-gateway"]["spec"]["tls"]


def test_keda_watches_the_consumers_the_services_bind() -> None:
    index = Index(render("prod"))
    expected = {"likeness-renderer": RENDERER_CONSUMER, "likeness-facecheck": FACECHECK_CONSUMER}
    for name, consumer in expected.items():
        (trigger,) = index.by_kind["ScaledObject"][name]["spec"]["triggers"]
        assert trigger["metadata"]["stream"] == COMMANDS_STREAM and trigger["metadata"]["consumer"] == consumer
        assert trigger["metadata"]["natsServerMonitoringEndpoint"] == "nats.likeness.svc.cluster.local:8222"


def test_the_nats_values_make_a_three_node_jetstream_cluster_on_disk() -> None:
    values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["fileStore"]["enabled"] and values["config"]["jetstream"]["fileStore"]["pvc"]
    assert values["config"]["monitor"]["port"] == 8222 and values["service"]["ports"]["monitor"]["enabled"]


def test_each_service_accepts_the_settings_its_pods_get(overlay: tuple[str, Index],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap and the Secret as each service's settings class reads them (prod: stand-ins for the
    values the secret store holds, the keys external-secret.yaml lists)."""
    name, index = overlay
    secrets = {key: base64.b64decode(value).decode() for secret in index.of("Secret")
               for key, value in secret.get("data", {}).items()}
    if name == "prod":
        listed = (K8S / "overlays" / "prod" / "external-secret.yaml").read_text()
        secrets = {key: "stand-in-for-a-secret-of-40-characters-xx" for key in
                   ("LIKENESS_GATEWAY_SESSION_SECRET", "LIKENESS_IMAGE_LINK_SECRET", "LIKENESS_DELIVERY_SECRET_KEY",
                    "LIKENESS_S3_ACCESS_KEY_ID", "LIKENESS_S3_SECRET_ACCESS_KEY")}
        assert all(key in listed for key in secrets)
    for variable in [v for v in os.environ if v.startswith("LIKENESS_")]:
        monkeypatch.delenv(variable)
    env = {**index.config(), **secrets, "LIKENESS_DATABASE_URL": "postgresql://likeness:pw@likeness-postgres-rw:5432/likeness"}
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    for service in DEFAULT_SERVICES:
        module = importlib.import_module(f"services.{service}.settings")
        (settings_class,) = [c for _, c in inspect.getmembers(module, inspect.isclass)
                             if issubclass(c, RuntimeSettings) and c.__module__ == module.__name__]
        settings = settings_class()
        assert settings.environment == ("dev" if name == "dev" else "prod")
        assert settings.http_port == 8080 and settings.stream_replicas == (3 if name == "prod" else 1)


def _core_kinds() -> set[str]:
    return {"Namespace", "ServiceAccount", "ConfigMap", "Secret", "Service", "PersistentVolumeClaim",
            "Deployment", "StatefulSet", "Job", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress",
            "NetworkPolicy"}
