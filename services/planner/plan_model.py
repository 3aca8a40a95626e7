"""The planner's `ChatModel` over the shared LLM client: json_schema structured output, json_object where unsupported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.planner.planning.errors import InvalidLlmAnswer, LlmUnavailable
from services.planner.planning.llm import Messages
from services.runtime.llm import LlmClient, LlmEmptyAnswer, LlmError, LlmRejected, LlmSettings

__all__ = ["OpenAICompatibleChat"]


class OpenAICompatibleChat:
    """`ChatModel` for `LlmPlanner`: asks for the plan schema strictly, and remembers a server that cannot."""

    def __init__(self, client: LlmClient) -> None:
        self._client = client
        # None until known; False once the server rejected json_schema and accepted json_object.
        self._json_schema: bool | None = None

    @classmethod
    def from_settings(cls, settings: LlmSettings) -> OpenAICompatibleChat:
        return cls(LlmClient(settings))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def complete(self, messages: Messages, schema: Mapping[str, Any]) -> str:
        if self._json_schema is not False:
            strict = {"type": "json_schema", "json_schema": {"name": "edit_plan", "strict": True, "schema": schema}}
            try:
                return await self._ask(messages, strict)
            except _SchemaRejected:
                pass  # An older or smaller server: JSON mode with the shape in the prompt still works.
        answer = await self._ask(messages, {"type": "json_object"})
        self._json_schema = False
        return answer

    async def _ask(self, messages: Messages, response_format: Mapping[str, Any]) -> str:
        try:
            return (await self._client.complete(messages, response_format=response_format)).text
        except LlmRejected as exc:
            if response_format.get("type") == "json_schema":
                raise _SchemaRejected from None
            raise LlmUnavailable(str(exc)) from None
        except LlmEmptyAnswer as exc:
            raise InvalidLlmAnswer(str(exc)) from None
        except LlmError as exc:
            raise LlmUnavailable(str(exc)) from None


class _SchemaRejected(Exception):
    """The server answered 400/422 to a json_schema request."""
