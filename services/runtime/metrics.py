"""Prometheus metrics more than one service records: LLM calls, step attempt phases, dead letters.

Each service's own metrics live in `services/<svc>/metrics.py`; what is defined here is imported by several
services, and a metric may be registered only once per process (tests run many services in one).
Labels are low-cardinality only: no chain, user or conversation ids, reasons from closed sets.
See services/runtime/METRICS.md for what each metric answers.
"""

from __future__ import annotations

import re

from prometheus_client import Counter, Histogram

__all__ = [
    "DEAD_LETTERS",
    "LLM_COST",
    "LLM_FALLBACKS",
    "LLM_REQUESTS",
    "LLM_SECONDS",
    "STEP_ATTEMPT_SECONDS",
    "label_value",
    "observe_step_phase",
]

# Renders run from seconds to minutes on a GPU, a face check well under a second on CPU.
_PHASE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_LLM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)

STEP_ATTEMPT_SECONDS = Histogram(
    "likeness_step_attempt_seconds",
    "Time of one phase of one step attempt: render (the engine's whole render), queue (in the backend's own "
    "queue), wait (for a backend to come back), face_check (scoring one image)",
    ["phase", "engine"], buckets=_PHASE_BUCKETS)

LLM_REQUESTS = Counter("likeness_llm_requests_total",
                       "Calls to an OpenAI-compatible server, by purpose (chat, plan), model and outcome "
                       "(ok, unavailable, rejected, empty)", ["purpose", "model", "outcome"])
LLM_SECONDS = Histogram("likeness_llm_request_seconds", "Time of one LLM call, whole answer (streamed or not)",
                        ["purpose", "model"], buckets=_LLM_BUCKETS)
LLM_FALLBACKS = Counter("likeness_llm_fallbacks_total",
                        "Answers made without the LLM (rules plan, offline persona reply), by purpose and reason",
                        ["purpose", "reason"])
LLM_COST = Counter("likeness_llm_cost_usd_total", "What the LLM calls cost, in USD, by the price table",
                   ["purpose", "model"])

DEAD_LETTERS = Counter("likeness_dead_letters_total", "Messages a consumer gave up on (dead-lettered)",
                       ["consumer"])

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/-]+")


def label_value(text: str | None, *, limit: int = 64, default: str = "unknown") -> str:
    """A configured name (model, engine, backend) as a label value: bounded length, no odd characters."""
    if not text:
        return default
    return _UNSAFE.sub("_", text)[:limit] or default


def observe_step_phase(phase: str, engine: str, seconds: float | None) -> None:
    """Record one phase's duration; a missing or negative figure (a clock that stepped) is skipped."""
    if seconds is None or seconds < 0:
        return
    STEP_ATTEMPT_SECONDS.labels(phase, label_value(engine)).observe(seconds)
