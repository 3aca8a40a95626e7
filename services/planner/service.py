"""Wiring of the planner process: planning (rules, or an LLM), the chain saga and its consumers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from contracts.subjects import (
    COMMANDS_STREAM,
    DEAD_LETTERS_STREAM,
    EVENTS_STREAM,
    PREFIX,
    dead_letter_subject,
    event_filter,
)
from services.planner.batches import BatchRecorder
from services.planner.catalog import catalog_of
from services.planner.catalog import serve as serve_catalog_requests
from services.planner.chain_writer import ChainService
from services.planner.handlers import command_consumer, dead_letter_handler, result_consumer
from services.planner.learning import LearnedThresholds
from services.planner.plan_model import OpenAICompatibleChat
from services.planner.planning import LlmPlanner, Planner, Registry, UserPolicy
from services.planner.requests import RequestPlanning
from services.planner.settings import PlannerSettings
from services.runtime.llm import LlmSettings
from services.runtime.prices import PriceTable
from services.runtime.runner import Runtime
from services.runtime.streams import ConsumerSpec

__all__ = ["build_runtime", "consumers", "llm_settings", "plan_prices"]

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def consumers(settings: PlannerSettings) -> tuple[ConsumerSpec, ...]:
    """The planner's durable consumers: chain commands, results, and dead letters of the services it commands."""
    # A plan may take longer than ack_wait (a slow LLM, asked twice): the bus keeps every message in
    # progress while its handler runs, so none is delivered again meanwhile.
    wait = settings.ack_wait_s
    return (
        ConsumerSpec("planner-commands", COMMANDS_STREAM, f"{PREFIX}.cmd.chain.>", ack_wait_s=wait),
        ConsumerSpec("planner-render-results", EVENTS_STREAM, event_filter("render"), ack_wait_s=wait),
        ConsumerSpec("planner-face-results", EVENTS_STREAM, event_filter("face"), ack_wait_s=wait),
        *(ConsumerSpec(f"planner-dead-letters-{service}", DEAD_LETTERS_STREAM, dead_letter_subject(service),
                       ack_wait_s=wait)
          for service in settings.dead_letters_of),
    )


def llm_settings(settings: PlannerSettings) -> LlmSettings | None:
    """The LLM the settings describe (timeout, output bound, temperature), or None for the rules only."""
    if not settings.llm_base_url:
        return None
    return LlmSettings(base_url=settings.llm_base_url, model=settings.llm_model or "", timeout_s=settings.llm_timeout_s,
                       api_key=settings.llm_api_key.get_secret_value() or "not-needed",
                       max_tokens=settings.llm_max_tokens, temperature=settings.llm_temperature,
                       seed=settings.llm_seed)


def plan_prices(settings: PlannerSettings) -> PriceTable:
    """The shared price table, with the planner model's own price when the settings give one."""
    prices = PriceTable.for_model(settings.llm_model, settings.llm_price_input, settings.llm_price_output)
    if settings.llm_base_url and settings.llm_model and prices.price(settings.llm_model) is None:
        log.warning("no price for planner model %s: its plans are recorded at cost 0 "
                    "(set LIKENESS_LLM_PRICE_INPUT/OUTPUT)", settings.llm_model)
    return prices


def build_runtime(settings: PlannerSettings, *, clock: Callable[[], datetime] = _now) -> Runtime:
    """The planner process: database, outbox relay and blob store on."""
    runtime = Runtime(settings, database=True, relay=True, blobs=True)
    assert runtime.store is not None
    llm = llm_settings(settings)
    chat = OpenAICompatibleChat.from_settings(llm) if llm is not None else None
    if chat is not None:

        @runtime.on_shutdown
        async def close_llm(_: Runtime) -> None:
            await chat.aclose()

    registry = Registry.load()
    planner = Planner(registry, LlmPlanner(chat) if chat else None)

    @runtime.on_startup
    async def serve_catalog(rt: Runtime) -> None:
        await serve_catalog_requests(rt.bus.nc, catalog_of(registry))

    chains = ChainService(runtime.store, clock)
    planning = RequestPlanning(planner, runtime.store, user_policy=UserPolicy(max_rating=settings.user_max_rating),
                               default_style=settings.default_style, llm_model=llm.model if llm else None,
                               prices=plan_prices(settings))
    batches = BatchRecorder(runtime.store, chains, lambda: runtime.blobs, clock)
    commands, render_results, face_results, *dead_letters = consumers(settings)
    learned = LearnedThresholds(runtime.store, clock, settings.threshold_rule()) if settings.threshold_learning else None
    runtime.bus.consume(command_consumer(commands, chains, planning, batches, settings, learned))
    for results in (render_results, face_results):
        runtime.bus.consume(result_consumer(results, chains, batches, workers=settings.workers, learned=learned))
    on_dead_letter = dead_letter_handler(chains, batches, clock)
    for spec in dead_letters:
        runtime.bus.consume_dead_letters(spec, on_dead_letter)
    return runtime
