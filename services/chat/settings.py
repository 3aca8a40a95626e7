"""The chat service's settings: the shared runtime settings plus its own (prefix LIKENESS_CHAT_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from services.runtime.settings import RuntimeSettings

__all__ = ["ChatSettings"]


class ChatSettings(RuntimeSettings):
    """Settings of the chat service: the optional LLM, history bounds and offline mode."""

    service_name: str = "chat"

    # Any OpenAI-compatible endpoint; with no base URL every reply comes from the offline persona.
    chat_llm_base_url: str | None = None
    chat_llm_model: str | None = None
    chat_llm_api_key: SecretStr = SecretStr("")
    # The whole streamed answer must arrive within this; connecting gets at most 5 s of it.
    chat_llm_timeout_s: float = Field(default=30.0, gt=0)
    chat_llm_max_tokens: int = Field(default=400, ge=16, le=8192)
    # None leaves the server's default (some models reject any other value).
    chat_llm_temperature: float | None = Field(default=None, ge=0, le=2)
    # Sampling seed sent with every reply request (None: the server's own).
    chat_llm_seed: int | None = None
    # Offer the LLM a `request_picture` tool, for picture requests the phrase rules do not catch.
    chat_llm_tools: bool = True
    # Put a message the phrase rules passed over to the LLM as a short "is this a picture wish?" question
    # before replying: "hinted" when it speaks of seeing, looking or wearing; "always"; or "off".
    chat_llm_wish_check: Literal["off", "hinted", "always"] = "hinted"
    # Prices of a model the price table does not list (USD per 1M tokens), e.g. a private deployment.
    chat_llm_price_input: float | None = Field(default=None, ge=0)
    chat_llm_price_output: float | None = Field(default=None, ge=0)

    # How much of the conversation the LLM sees: the last N messages, and at most this many characters.
    chat_history_messages: int = Field(default=20, ge=1, le=200)
    chat_history_chars: int = Field(default=12_000, ge=500)

    # Pause between the words of an offline reply, so it streams like a typed one.
    chat_offline_delay_s: float = Field(default=0.02, ge=0, le=1)

    # Replace the built-in personas file (same format as services/chat/data/personas.json).
    chat_personas_file: Path | None = None

    # How many messages each consumer handles at once in this process.
    chat_workers: int = Field(default=8, ge=1, le=256)

    @field_validator("chat_llm_base_url", "chat_llm_model", "chat_personas_file", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # `LIKENESS_CHAT_LLM_BASE_URL=` means "no LLM", not an empty URL.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _llm_complete(self) -> ChatSettings:
        if self.chat_llm_base_url and not self.chat_llm_model:
            raise ValueError("LIKENESS_CHAT_LLM_MODEL is required when LIKENESS_CHAT_LLM_BASE_URL is set")
        if (self.chat_llm_price_input is None) != (self.chat_llm_price_output is None):
            raise ValueError("set both LIKENESS_CHAT_LLM_PRICE_INPUT and LIKENESS_CHAT_LLM_PRICE_OUTPUT, or neither")
        return self
