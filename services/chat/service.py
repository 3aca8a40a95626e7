"""The chat service's process: characters and conversations over the event store, replies streamed live.

Consumes character commands (`likeness.cmd.character.>`, durable `chat-commands-character`) and chat
commands (`likeness.cmd.chat.>`, durable `chat-commands-chat`) as two durables, since the commands
stream is a work queue shared with other services. Built-in characters are recorded at start-up,
before any command is consumed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from services.chat.application import Characters, Conversations
from services.runtime.prices import PriceTable
from services.chat.handlers import CHARACTER_CONSUMER, CHAT_CONSUMER, character_consumer, chat_consumer
from services.chat.llm import OpenAIReplyModel, ReplyModel
from services.chat.personas import load_personas
from services.chat.replies import Replier
from services.chat.settings import ChatSettings
from services.runtime.llm import LlmSettings
from services.runtime.runner import Runtime

__all__ = ["CHARACTER_CONSUMER", "CHAT_CONSUMER", "build_runtime", "reply_model"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def build_runtime(
    settings: ChatSettings, *, llm: ReplyModel | None = None, clock: Clock = lambda: datetime.now(UTC)
) -> Runtime:
    """The chat process; `llm` replaces the one the settings describe (tests pass a fake)."""
    rt = Runtime(settings, database=True, relay=True, blobs=False)
    assert rt.store is not None
    book = load_personas(settings.chat_personas_file)
    prices = PriceTable.for_model(settings.chat_llm_model, settings.chat_llm_price_input,
                                  settings.chat_llm_price_output)
    llm = llm or reply_model(settings)
    if llm is not None:
        if prices.price(llm.model) is None:
            log.warning("no price for model %s: its replies are recorded at cost 0 "
                        "(set LIKENESS_CHAT_LLM_PRICE_INPUT/OUTPUT)", llm.model)

        @rt.on_shutdown
        async def close_llm(_: Runtime) -> None:
            await llm.aclose()

    characters = Characters(rt.store, clock)
    replier = Replier(book, prices, llm, rt.bus.publish_live, clock, history_messages=settings.chat_history_messages,
                      history_chars=settings.chat_history_chars, offline_delay_s=settings.chat_offline_delay_s,
                      picture_tool=settings.chat_llm_tools, wish_check=settings.chat_llm_wish_check)
    conversations = Conversations(rt.store, characters, replier, clock)

    @rt.on_startup
    async def seed_builtins(_: Runtime) -> None:
        changed = await characters.seed(book.personas)
        log.info("built-in characters: %d in the personas file, %d recorded now", len(book.personas), changed)

    rt.bus.consume(character_consumer(characters, ack_wait_s=settings.ack_wait_s, workers=settings.chat_workers))
    rt.bus.consume(chat_consumer(conversations, ack_wait_s=settings.ack_wait_s, workers=settings.chat_workers))
    return rt


def reply_model(settings: ChatSettings) -> ReplyModel | None:
    """The LLM the settings describe, or None for offline persona replies only."""
    if not settings.chat_llm_base_url or not settings.chat_llm_model:
        return None
    return OpenAIReplyModel.connect(LlmSettings(
        base_url=settings.chat_llm_base_url, model=settings.chat_llm_model,
        api_key=settings.chat_llm_api_key.get_secret_value(), timeout_s=settings.chat_llm_timeout_s,
        max_tokens=settings.chat_llm_max_tokens, temperature=settings.chat_llm_temperature,
        seed=settings.chat_llm_seed))
