"""JSON in what a language model wrote: the whole text, or the first object in it. Pure, no SDK.

A model asked for plain text (or one that ignores a JSON mode) wraps its JSON in words or a fence:
"Here is the plan: {...} Hope it helps!". Planner and chat both read such answers.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["json_in_text"]


def json_in_text(text: str) -> Any:
    """The text as JSON, or else the first JSON object in it; `json.JSONDecodeError` when there is none."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as first:
        decoder = json.JSONDecoder()
        for match in re.finditer(r"\{", text):
            try:
                return decoder.raw_decode(text, match.start())[0]
            except json.JSONDecodeError:
                continue
        raise first from None
