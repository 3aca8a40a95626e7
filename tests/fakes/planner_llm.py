"""Fakes of the planner's LLM adapter (`ChatModel`) and valid LLM plan answers, for tests."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from services.planner.planning.llm import ModelAnswer

__all__ = ["ScriptedChat", "plan_json"]


def plan_json(*steps: tuple[str, str] | tuple[str, str, str]) -> str:
    """A valid LLM answer: `plan_json(("background", "Change the background to ..."), ...)`."""
    return json.dumps({"steps": [{"kind": s[0], "instruction": s[1], "negative": s[2] if len(s) > 2 else ""}
                                 for s in steps]})


class ScriptedChat:
    """A `ChatModel` that answers from a script: each item is the raw text, or an exception to raise."""

    def __init__(self, replies: Iterable[str | BaseException] = ()) -> None:
        self._replies = list(replies)
        self.calls: list[list[dict[str, str]]] = []

    async def complete(self, messages: Sequence[Mapping[str, str]], schema: Mapping[str, Any]) -> ModelAnswer:
        self.calls.append([dict(message) for message in messages])
        if not self._replies:
            raise AssertionError("ScriptedChat: no scripted reply left")
        reply = self._replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        # Words stand in for tokens, as in the fake server; the usage is "reported".
        return ModelAnswer(reply, sum(len(m["content"].split()) for m in messages), len(reply.split()))
