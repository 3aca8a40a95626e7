"""The monitoring files (Grafana dashboard, PrometheusRule) name only metrics the services register, and the
pure parts of the metrics: chain outcomes and reasons from the saga's own decisions, backend busy time, labels."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi import FastAPI
from prometheus_client import REGISTRY

import services.facecheck.metrics
import services.gateway.live
import services.gateway.sse
import services.planner.planning.llm
import services.renderer.comfy_engine
import services.runtime.bus
import services.runtime.outbox  # noqa: F401  (registers its metrics)
from contracts import FaceScored, ImageRef, PlannedStep, RenderCompleted, RenderFailed, RequestChain, StepRetried
from services.gateway.metrics import instrument_http
from services.planner import metrics as planner_metrics
from services.planner.saga.decide import PlanAccepted, PlanRefused, StartChain, decide
from services.planner.saga.state import ChainState, evolve
from services.renderer.metrics import backend_label
from services.renderer.pool import BackendPool
from services.runtime.metrics import label_value

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "monitoring"
METRIC = re.compile(r"\blikeness_[a-z_]+\b")
CHAIN = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
REFERENCE = ImageRef(sha256="ab" * 32, media_type="image/png", width=512, height=512, bytes=1000)


def registered_names() -> set[str]:
    """Every sample name the process's registry can expose (a counter `x` exposes `x_total`, a histogram
    `x_bucket`, `x_sum`, `x_count`), once every service's metrics module is imported."""
    instrument_http(FastAPI())  # the HTTP metrics are made with the first app
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count"),
                "gauge": ("",)}
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "likeness-dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and all(p.get("targets") for p in panels), "every panel queries something"
    return [target["expr"] for panel in panels for target in panel["targets"]]


def rules() -> list[dict]:
    document = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    assert (document["apiVersion"], document["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_and_the_alerts_query_is_registered_by_a_service() -> None:
    exprs = dashboard_exprs() + [rule["expr"] for rule in rules()]
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    missing = used - registered_names()
    assert not missing, f"queried but registered by no service: {sorted(missing)}"
    # The brief's metrics are all on the dashboard.
    for name in ("likeness_chains_total", "likeness_step_attempt_seconds_bucket", "likeness_face_score_bucket",
                 "likeness_attempts_per_accepted_step_bucket", "likeness_renderer_queue_depth",
                 "likeness_backend_busy_seconds_total", "likeness_backend_up", "likeness_llm_request_seconds_bucket",
                 "likeness_llm_fallbacks_total", "likeness_llm_cost_usd_total", "likeness_sse_clients",
                 "likeness_http_requests_total", "likeness_http_request_duration_seconds_bucket",
                 "likeness_dead_letters_total"):
        assert name in used, name


def test_a_metric_name_the_services_do_not_register_is_caught() -> None:
    assert "likeness_chain_total" not in registered_names()
    assert "likeness_face_score" not in registered_names()  # a histogram is queried by its _bucket/_sum/_count


def test_every_alert_has_a_severity_a_summary_and_a_for_and_the_required_alerts_exist() -> None:
    alerts = rules()
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"} and rule["annotations"]["summary"], rule
        assert re.fullmatch(r"\d+m", rule["for"]), rule
    names = {rule["alert"] for rule in alerts}
    assert {"LikenessChainFailureRatioHigh", "LikenessChainsStuck", "LikenessRenderBackendDown",
            "LikenessDeadLettersGrowing", "LikenessServiceDown", "LikenessServiceNotReady"} <= names


class Saga:
    """The real saga, driven without I/O; `outcomes` are what each decision would count."""

    def __init__(self, **policy) -> None:
        self.state = ChainState()
        self.policy = policy

    def __call__(self, trigger) -> list:
        events = decide(self.state, trigger).events
        for event in events:
            self.state = evolve(self.state, event)
        return [o for o in (planner_metrics.chain_outcome(e, events) for e in events) if o is not None]

    def start(self, plan=None) -> list:
        request = RequestChain(chain_id=CHAIN, character_id="luna", user_id="u1", request_text="beach",
                               reference_image=REFERENCE)
        step = PlannedStep(index=0, kind="pose", prompt="p", width=512, height=512, seed=1, model="m",
                           template="qwen_edit", steps=8, cfg=1.0)
        return self(StartChain(request, plan or PlanAccepted((step,), "rules"), **self.policy))

    def rendered(self, attempt: int) -> list:
        return self(RenderCompleted(chain_id=CHAIN, step=0, attempt=attempt, image=REFERENCE, workflow_hash="h",
                                    backend="b", engine="draft"))

    def scored(self, attempt: int, score: float) -> list:
        return self(FaceScored(chain_id=CHAIN, step=0, attempt=attempt, score=score, faces_found=1, encoder="dlib"))


def test_chain_outcomes_and_reasons_from_the_sagas_own_decisions() -> None:
    saga = Saga(max_retries=1)
    assert saga.start() == [("started", "")]
    assert saga.rendered(1) == [] and saga.scored(1, 10.0) == []
    assert saga.rendered(2) == [] and saga.scored(2, 12.0) == [("failed", "face_drift")]

    refused = Saga().start(PlanRefused("no", "content_policy.words.user_limit"))
    assert refused == [("started", ""), ("refused", "content_policy.words")]

    broken = Saga()
    broken.start()
    assert broken(RenderFailed(chain_id=CHAIN, step=0, attempt=1, reason="bad graph", error_kind="validation")) == [
        ("failed", "render_validation")]

    done = Saga()
    done.start()
    done.rendered(1)
    assert done.scored(1, 90.0) == [("completed", "")]


def test_reason_labels_stay_in_a_closed_set() -> None:
    assert planner_metrics.refusal_reason("planner.dead_letter") == "planner.dead_letter"
    assert planner_metrics.refusal_reason("Some Rule With Spaces") == "other"
    drift = StepRetried(chain_id=CHAIN, step=0, next_attempt=2, new_seed=3, previous_score=20.0, reason="low")
    lost = StepRetried(chain_id=CHAIN, step=0, next_attempt=2, new_seed=3, reason="render unreachable: gone")
    odd = StepRetried(chain_id=CHAIN, step=0, next_attempt=2, new_seed=3, reason="render sideways: ?")
    assert [planner_metrics.retry_reason(r) for r in (drift, lost, odd)] == [
        "face_drift", "render_unreachable", "render_other"]
    assert label_value("llama3:8b") == "llama3:8b" and label_value("a b{c}") == "a_b_c_" and label_value("") == "unknown"
    assert backend_label("http://user:secret@comfy-0:8188/some/path?x=1") == "http://comfy-0:8188"


def test_record_counts_a_decisions_events() -> None:
    def value(name: str, **labels) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (value("likeness_chains_total", outcome="failed", reason="face_check"),
              value("likeness_face_score_count"), value("likeness_step_retries_total", reason="face_drift"))
    saga = Saga(max_retries=1)
    saga.start()
    saga.rendered(1)
    events = decide(saga.state, FaceScored(chain_id=CHAIN, step=0, attempt=1, score=5.0, faces_found=1,
                                           encoder="dlib")).events
    planner_metrics.record(events)
    assert value("likeness_face_score_count") == before[1] + 1
    assert value("likeness_step_retries_total", reason="face_drift") == before[2] + 1
    assert value("likeness_chains_total", outcome="failed", reason="face_check") == before[0]


@pytest.fixture
async def pool():
    async with httpx.AsyncClient() as http:
        clock = [100.0]
        yield BackendPool(["http://metrics-a:1", "http://metrics-b:2"], http, clock=lambda: clock[0]), clock


async def test_busy_seconds_count_the_time_any_job_runs_on_a_backend_once(pool) -> None:
    backends, clock = pool
    a = backends.backends["http://metrics-a:1"]
    async with backends.lease("http://metrics-a:1"):
        clock[0] += 2.0
        async with backends.lease("http://metrics-a:1"):  # a second job at once: still one busy spell
            clock[0] += 3.0
        assert a.busy_seconds(clock[0]) == 5.0  # a spell still running counts up to now
        clock[0] += 1.0
    clock[0] += 10.0  # idle
    async with backends.lease("http://metrics-a:1"):
        clock[0] += 4.0
    assert a.busy_seconds(clock[0]) == 10.0
    assert backends.backends["http://metrics-b:2"].busy_seconds(clock[0]) == 0.0
    assert REGISTRY.get_sample_value("likeness_backend_busy_seconds_total", {"backend": "http://metrics-a:1"}) == 10.0
    backends.mark_down("http://metrics-b:2", "refused")
    assert REGISTRY.get_sample_value("likeness_backend_up", {"backend": "http://metrics-b:2"}) == 0.0
