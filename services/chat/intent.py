"""Does a chat message ask for a picture of the character, and of what scene? Pure phrase rules.

`picture_request("send me a pic of you at the beach")` is `"at the beach"`; a request that names no
scene ("selfie?") gets `DEFAULT_SCENE`; anything else is None. Only pictures *of the character* count:
"a picture of the menu" or "I saw a picture of a cat" are not requests. Planner modifiers written in
the message (`--count 2`, `--style anime`) are kept at the end of the scene.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_SCENE", "picture_request", "spoken_scene"]

DEFAULT_SCENE = "smiling at the camera, a casual selfie"

_NOUN = r"(?:pics?|pictures?|photos?|photographs?|selfies?|snaps?|snapshots?|images?|shots?)"
_ME = r"(?:me|us)"
_YOU = r"(?:you|yourself|u|ya)"
_FILLER = (r"(?:(?:a|an|another|one|some|the|your|ur|new|quick|cute|nice|little|recent|more|few|couple|of|any"
           r"|fresh|latest|good|real)\s+)*")
_POLITE = r"(?:please|pls|plz|for me|for us)"

# Each pattern ends where the scene may begin; `_scene` decides whether what follows is one.
_TRIGGERS = [
    # "send me a picture ...", "give us a selfie ...", "shoot me a pic ..."
    rf"\b(?:send|give|get|show|text|dm|share|post|drop|shoot|gimme)\s+{_ME}\s+{_FILLER}{_NOUN}\b",
    # "can I get / have / see a photo ..."
    rf"\b(?:can|could|may|might)\s+(?:i|we)\s+(?:please\s+)?(?:get|have|see)\s+{_FILLER}{_NOUN}\b",
    # "I'd love a pic of you ...", "do you have any photos of yourself ...", "pic of you ..."
    (rf"(?:^|\b(?:want|wanna|need|gimme|any|get|i'?d\s+(?:love|like)|i\s+would\s+(?:love|like)|you\s+(?:have|got)"
     rf")\s+){_FILLER}{_NOUN}\s+of\s+{_YOU}\b"),
    # "show me you ...", "show me what you look like ..."
    rf"\bshow\s+{_ME}\s+(?:{_YOU}|what\s+you\s+look\s+like)\b",
    # "take a selfie ..." as a request, not "I take photos"
    (rf"(?:^|\b(?:please|pls|plz|can\s+you|could\s+you|would\s+you|will\s+you|go|now|and)\s+)(?:take|snap)"
     rf"\s+{_FILLER}{_NOUN}\b"),
    # a message that is only the request: "selfie?", "another pic at the beach pls" (not "nice picture!")
    rf"^\s*(?:(?:a|an|another|one|some|more|new|quick)\s+)*{_NOUN}\b",
]
# "can I see you ...", "I'd love to see you ...": a scene must follow, else it means meeting up.
_SEE_YOU = [
    rf"\b(?:can|could|may|let)\s+(?:i|me|we|us)\s+(?:please\s+)?see\s+{_YOU}\b",
    rf"\b(?:i|i'd|id|i\s+would)\s+(?:really\s+)?(?:love|like|want|wanna)\s+(?:to\s+)?see\s+{_YOU}\b",
]
_SCENE_WORDS = frozenset(
    "at in on wearing from with while by near under inside outside dressed doing sitting standing lying laying "
    "posing holding looking smiling having during after before today tonight as like when where".split()
)
_MODIFIER = re.compile(r"(?:^|\s)(--?[a-z]+)(?:\s+(?!-)(\S+))?", re.IGNORECASE)


def picture_request(text: str) -> str | None:
    """The scene the message asks a picture of the character in, or None if it asks for no picture."""
    text = " ".join(text.replace("\u2019", "'").split())
    body, modifiers = _split_modifiers(text)
    for pattern, needs_scene in [*((p, False) for p in _TRIGGERS), *((p, True) for p in _SEE_YOU)]:
        for match in re.finditer(pattern, body, re.IGNORECASE):
            scene = _scene(body[match.end():], needs_scene=needs_scene)
            if scene is not None:
                return " ".join(part for part in (scene or DEFAULT_SCENE, modifiers) if part)
    return None


def spoken_scene(scene: str) -> str:
    """The scene as a character would say it: without the planner's `--flags`."""
    return _split_modifiers(scene)[0]


def _scene(rest: str, *, needs_scene: bool) -> str | None:
    """The scene after a trigger: "" for none, None when what follows is not a scene of the character."""
    rest = re.split(r"(?<=[.!?])\s", rest, maxsplit=1)[0]
    rest = _tidy(rest)
    of_you = re.match(rf"of\s+{_YOU}\b(.*)", rest, re.IGNORECASE)
    if of_you:
        rest = _tidy(of_you.group(1))
    elif re.match(r"of\b", rest, re.IGNORECASE):
        return None  # a picture of something else
    if not rest or rest.lower().startswith("and "):
        return None if needs_scene else ""
    first = rest.split()[0].lower()
    return rest if first in _SCENE_WORDS else None


def _tidy(scene: str) -> str:
    scene = re.sub(rf"\b{_POLITE}\b", " ", scene, flags=re.IGNORECASE)
    return " ".join(scene.split()).strip(" ,.!?;:-~*()")


def _split_modifiers(text: str) -> tuple[str, str]:
    """`--count 2` and friends are the planner's: kept aside so they do not break the phrase rules."""
    found = [m.group(0).strip() for m in _MODIFIER.finditer(text)]
    return _MODIFIER.sub(" ", text).strip(), " ".join(found)
