"""Picture wishes the phrase rules do not catch, found by a cheap question to the LLM. Pure: prompt and parsing.

"I wish I could see how you look in a winter coat in the snow" asks for no picture in so many words,
and a model that does not call tools (or that calls them for every "hi") cannot be trusted to notice.
So before the reply is written, a message the rules passed over but that speaks of looking, seeing or
wearing (`worth_asking`) is put to the model as a yes/no question with a scene (`wish_messages`), and
its answer read leniently (`read_wish`): JSON, JSON in prose, or a bare "yes"/"no". The rules stay
the floor: what they catch is never asked about, and any doubt reads as "no picture".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from services.runtime.json_text import json_in_text

__all__ = ["WISH_MAX_TOKENS", "Wish", "read_wish", "wish_messages", "worth_asking"]

# A yes/no and a short scene; a model that runs on is cut here.
WISH_MAX_TOKENS = 60

# Words without which a message is not worth a model call: nobody wishes for a picture without them.
_HINTS = re.compile(
    r"\b(?:see|seeing|saw|look|looks|looking|wear|wearing|wore|dressed|outfit|dress|coat|suit|costume|cosplay"
    r"|pic|pics|picture|pictures|photo|photos|selfie|selfies|snap|image|show|imagine|camera|pose|posing)\b",
    re.IGNORECASE,
)

_QUESTION = """You sort chat messages sent to {name}, a character in a chat app that can send pictures of \
{name}. Does the user's message ask for, or wish for, a picture of {name}, or to see how {name} looks \
somewhere or in some clothes? Answer with JSON only: {{"picture": true, "scene": "where {name} is, what \
{name} wears and does, in a few words"}} or {{"picture": false}}. Questions about the past, pictures of \
other things, and plain small talk are false."""


@dataclass(frozen=True)
class Wish:
    """The model's verdict: a picture, and of what scene ("" when it named none)."""

    picture: bool
    scene: str = ""


def worth_asking(text: str) -> bool:
    """Whether a message the rules passed over may still be a picture wish, and so is worth a model call."""
    return bool(_HINTS.search(text))


def wish_messages(name: str, text: str) -> list[dict[str, str]]:
    """The classification call: the question as the system prompt, the user's message as it was written."""
    return [{"role": "system", "content": _QUESTION.format(name=name)}, {"role": "user", "content": text}]


def read_wish(answer: str) -> Wish:
    """The verdict in the model's answer; anything unreadable is "no picture" (the rules already said no)."""
    text = answer.strip()
    try:
        value = json_in_text(re.sub(r"^```(?:json)?\s*|\s*```$", "", text))
    except json.JSONDecodeError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("picture"), bool | str):
        picture = value["picture"] is True or str(value["picture"]).strip().lower() in ("true", "yes")
        scene = value.get("scene")
        return Wish(picture, _tidy(scene) if picture and isinstance(scene, str) else "")
    first = re.match(r"\W*(yes|no|true|false)\b[\s:,.-]*(.*)", text, re.IGNORECASE | re.DOTALL)
    if first is None:
        return Wish(False)
    picture = first.group(1).lower() in ("yes", "true")
    return Wish(picture, _tidy(first.group(2).splitlines()[0]) if picture and first.group(2) else "")


def _tidy(scene: str) -> str:
    # The scene goes on to the planner as a request: one line, no quotes, of a sensible length.
    scene = " ".join(scene.replace('"', " ").split()).strip(" .")
    return scene[:200]
