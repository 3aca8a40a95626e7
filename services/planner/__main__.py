"""`python -m services.planner`: run the planner service alone against the configured NATS and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.subjects import COMMANDS_STREAM, EVENTS_STREAM, PREFIX, event_filter
from services.planner.batches import BatchRecorder
from services.planner.chains import ChainService
from services.planner.handlers import command_handlers, result_handlers
from services.planner.planning import LlmPlanner, LlmSettings, OpenAICompatibleChat, Planner, Registry, UserPolicy
from services.planner.requests import RequestPlanning
from services.planner.settings import PlannerSettings
from services.runtime.runner import Runtime, run_service
from services.runtime.streams import ConsumerSpec


def _now() -> datetime:
    return datetime.now(UTC)


async def build() -> Runtime:
    settings = PlannerSettings()
    runtime = Runtime(settings, database=True, relay=True, blobs=True)
    assert runtime.store is not None
    chat = None
    if settings.llm_base_url:
        chat = OpenAICompatibleChat.from_settings(LlmSettings(
            base_url=settings.llm_base_url, model=settings.llm_model or "", timeout_s=settings.llm_timeout_s,
            api_key=settings.llm_api_key.get_secret_value() or "not-needed"))

        @runtime.on_shutdown
        async def close_llm(_: Runtime) -> None:
            await chat.aclose()

    planner = Planner(Registry.load(), LlmPlanner(chat) if chat else None)
    chains = ChainService(runtime.store, _now)
    planning = RequestPlanning(planner, runtime.store, user_policy=UserPolicy(max_rating=settings.user_max_rating),
                               default_style=settings.default_style)
    batches = BatchRecorder(runtime.store, chains, lambda: runtime.blobs, _now)
    workers = settings.workers
    runtime.bus.consume(ConsumerSpec("planner-commands", COMMANDS_STREAM, f"{PREFIX}.cmd.chain.>"),
                        command_handlers(chains, planning, batches, settings), workers=workers)
    results = result_handlers(chains, batches)
    runtime.bus.consume(ConsumerSpec("planner-render-results", EVENTS_STREAM, event_filter("render")), results,
                        workers=workers)
    runtime.bus.consume(ConsumerSpec("planner-face-results", EVENTS_STREAM, event_filter("face")), results,
                        workers=workers)
    return runtime


if __name__ == "__main__":
    run_service(build)
