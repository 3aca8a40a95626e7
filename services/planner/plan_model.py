"""The planner's `ChatModel` over the shared LLM client: the strictest answer format the server can do.

A ladder, one rung down each time the server shows it cannot do a format, remembered for the life
of the process (one planner talks to one server):

    json_schema (strict, the plan's schema)  ->  json_object  ->  plain text, the JSON cut out of it

"Cannot do" is HTTP 400 or 422 (OpenAI, vLLM, Ollama), or HTTP 500 whose message names the format
(llama-cpp-python answers a json_schema request with a 500 and a traceback). Any other failure is
the server's, not the format's: it reaches the planner, which plans by the rules. Each step down is
one log line and a count in `likeness_planner_llm_format_fallbacks_total`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter

from services.planner.planning.errors import InvalidLlmAnswer, LlmUnavailable
from services.planner.planning.llm import Messages, ModelAnswer
from services.runtime.llm import LlmClient, LlmEmptyAnswer, LlmError, LlmRejected, LlmSettings, LlmUnavailable as Down

__all__ = ["FORMATS", "OpenAICompatibleChat", "cannot_do_format"]

log = logging.getLogger(__name__)

FORMATS = ("json_schema", "json_object", "text")

FORMAT_FALLBACKS = Counter("likeness_planner_llm_format_fallbacks_total",
                           "Answer formats the LLM server could not do, by format and HTTP status",
                           ["format", "status"])

# What a server's error says when it is about the answer format (llama.cpp, llama-cpp-python, vLLM, TGI).
_NAMES_FORMAT = re.compile(r"response_format|json_schema|json_object|grammar|schema|structured", re.I)


def cannot_do_format(error: Down) -> bool:
    """True when the error shows the server lacks the requested format (not that it is down)."""
    if isinstance(error, LlmRejected):
        return True
    return error.status_code == 500 and bool(_NAMES_FORMAT.search(str(error)))


class OpenAICompatibleChat:
    """`ChatModel` for `LlmPlanner`: asks for the plan in the best format the server has shown it can do."""

    def __init__(self, client: LlmClient) -> None:
        self._client = client
        self._rung = 0  # index into FORMATS: where this server's answers are asked for

    @classmethod
    def from_settings(cls, settings: LlmSettings) -> OpenAICompatibleChat:
        return cls(LlmClient(settings, purpose="plan"))

    @property
    def answer_format(self) -> str:
        return FORMATS[self._rung]

    async def aclose(self) -> None:
        await self._client.aclose()

    @property
    def model(self) -> str:
        return self._client.model

    async def complete(self, messages: Messages, schema: Mapping[str, Any]) -> ModelAnswer:
        while True:
            rung = self._rung
            try:
                answer = await self._client.complete(messages, response_format=_response_format(FORMATS[rung], schema))
                usage = answer.usage
                return ModelAnswer(answer.text, usage.prompt_tokens, usage.completion_tokens, usage.reported)
            except LlmEmptyAnswer as exc:
                raise InvalidLlmAnswer(str(exc)) from None
            except Down as exc:
                if rung + 1 >= len(FORMATS) or not cannot_do_format(exc):
                    raise LlmUnavailable(str(exc)) from None
                self._step_down(rung, exc)
            except LlmError as exc:
                raise LlmUnavailable(str(exc)) from None

    def _step_down(self, rung: int, error: Down) -> None:
        # Several plans in flight may learn it at once: only the first moves the rung and says so.
        if self._rung != rung:
            return
        self._rung = rung + 1
        FORMAT_FALLBACKS.labels(FORMATS[rung], str(error.status_code)).inc()
        log.warning("LLM server cannot answer in %s (%s); asking for %s from now on", FORMATS[rung], error,
                    FORMATS[rung + 1])


def _response_format(answer_format: str, schema: Mapping[str, Any]) -> dict[str, Any] | None:
    if answer_format == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "edit_plan", "strict": True, "schema": dict(schema)}}
    if answer_format == "json_object":
        return {"type": "json_object"}
    return None  # plain text: the prompt asks for the JSON object, parse_answer cuts it out
