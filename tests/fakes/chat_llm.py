"""A fake of chat's `ReplyModel`: answers from a script (text, `LlmAnswer` or an exception), records requests.

Picture-wish questions are answered from their own script (`wishes`), "no picture" once it is used up."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from services.chat.errors import LlmUnavailable
from services.chat.llm import DeltaSink, LlmAnswer, Messages, WishAnswer
from services.chat.wishes import Wish
from services.runtime.llm import Usage, estimate_tokens

__all__ = ["ScriptedReplyModel"]


class ScriptedReplyModel:
    """In-tree fake `ReplyModel`: answers from a script (text, `LlmAnswer` or an exception), records requests."""

    def __init__(self, answers: Iterable[str | LlmAnswer | Exception] = (), *, model: str = "scripted",
                 default: str | None = None, wishes: Iterable[Wish | Exception] = ()) -> None:
        self.model = model
        self.answers: deque[str | LlmAnswer | Exception] = deque(answers)
        self.default = default
        self.requests: list[tuple[list[dict[str, Any]], bool]] = []
        self.wishes: deque[Wish | Exception] = deque(wishes)
        self.wish_requests: list[tuple[str, str]] = []
        self.closed = False

    async def stream(self, messages: Messages, on_delta: DeltaSink, *, offer_picture_tool: bool = False) -> LlmAnswer:
        self.requests.append(([dict(m) for m in messages], offer_picture_tool))
        answer = self.answers.popleft() if self.answers else self.default
        if answer is None:
            raise LlmUnavailable("scripted model: no answer left")
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, str):
            answer = LlmAnswer(answer, sum(estimate_tokens(str(m.get("content", ""))) for m in messages),
                               estimate_tokens(answer))
        words = answer.text.split(" ")
        for index, word in enumerate(words):
            await on_delta(word if index == len(words) - 1 else word + " ")
        return answer

    async def wish(self, character_name: str, text: str) -> WishAnswer:
        self.wish_requests.append((character_name, text))
        wish = self.wishes.popleft() if self.wishes else Wish(False)
        if isinstance(wish, Exception):
            raise wish
        return WishAnswer(wish, Usage(80, 8))

    async def aclose(self) -> None:
        self.closed = True
