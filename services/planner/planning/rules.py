"""The deterministic rule-based planner: free text -> background / outfit / pose intents, safest first.

Decisions, so that the same text always gives the same plan:

* Edits of one kind merge into one step ("on a beach" + "at sunset" -> one background step), and
  steps run in `KIND_ORDER` (background, outfit, pose; the reason is written next to it).
* Negations ("not in a dress", "no hat", "without glasses") never produce their edit: the negated
  words go to the negative prompt of the step of their kind, or, with no such step, to the
  plan-wide negative prompt every step carries.
* "keep her hair" / "don't change the background" / "same outfit": an edit kind named this way is
  not planned at all; anything else named is added to every step's "keep ... unchanged" clause.
* Words the rules cannot place, in a request where they place nothing else, become one step of kind
  "pose" carrying the whole text: an unplaced request nearly always says what the person does
  ("holding a cup of coffee", "look happy"), and pose is the step allowed to move the body.
* A request with nothing to change at all ("send me a picture of you") drafts no intent; planning
  then refuses it with a reason saying what could be asked, rather than render an empty edit. So
  does an unplaced question ("what's 2+2?") or talk to the planner ("ignore previous instructions"):
  painted as one edit, it would be a picture nobody asked for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from services.planner.planning.cues import Segment, read_segments, strip_filler
from services.planner.planning.decision import KIND_ORDER, Draft, EditIntent, EditKind
from services.planner.planning.instructions import (
    PRONOUNS, Pronouns, background_prompt, fallback_prompt, normalise_pronouns, outfit_prompt, pose_prompt,
)
from services.planner.planning.profiles import Gender
from services.planner.planning.vocabulary import (
    ACCESSORIES, CLOTHING, GERUNDS, PLACES, SCENES, STRIPPED_PREPOSITIONS,
)

__all__ = ["FALLBACK_KIND", "draft_by_rules"]

FALLBACK_KIND: EditKind = "pose"

_KEPT_KIND: dict[str, EditKind] = {
    "background": "background", "backdrop": "background", "scene": "background", "setting": "background",
    "location": "background", "place": "background", "outfit": "outfit", "clothes": "outfit",
    "clothing": "outfit", "attire": "outfit", "pose": "pose", "position": "pose", "posture": "pose",
}
_LEADING = re.compile(r"^(?:(?:a|an|the|any|some|more|same|her|his|their|my|your)\s+)+", re.IGNORECASE)
_KEEP_TAIL = re.compile(
    r"\s+(?:the\s+same|unchanged|as\s+(?:it\s+)?is|as\s+they\s+are|alone|intact|too|as\s+well|please)\s*$", re.I
)
_ITEM_SPLIT = re.compile(r"\s*(?:,|\band\b|\bor\b|&)\s*", re.IGNORECASE)
_META_TALK = re.compile(
    r"\b(?:ignore|disregard|instructions?|system\s+prompt|prompts?|json|output|respond|answer|plans?|steps?)\b", re.I
)
# A question written without its "?": "what is 2+2", "who are you". ("how about ..." proposes an edit.)
_QUESTION_WORD = re.compile(r"^\s*(?:what|what's|whats|who|who's|why|when|where|which|how(?!\s+about))\b", re.I)
_BACKGROUND_WORD = re.compile(r"\s+(?:background|backdrop)$", re.IGNORECASE)


def draft_by_rules(text: str, gender: Gender, *, note: str | None = None) -> Draft:
    """Draft the edits `text` asks for, for a character of `gender`."""
    pronouns = PRONOUNS[gender]
    segments = read_segments(text)
    suppressed, preserved = _kept(s for s in segments if s.role == "keep")
    edits = [s for s in segments if s.kind is not None and s.role not in ("negate", "keep")]
    notes = [note] if note else []
    if dropped := sorted({s.kind for s in edits if s.kind in suppressed}, key=KIND_ORDER.index):
        notes.append(f"kept the {' and '.join(dropped)} as asked")
    builders = {"background": _background, "outfit": _outfit, "pose": _pose}
    intents = []
    for kind in KIND_ORDER:
        of_kind = [s for s in edits if s.kind == kind]
        if of_kind and kind not in suppressed:
            intents.append(builders[kind](of_kind, pronouns, preserved))
    loose = [s.text for s in segments if s.role == "loose"]
    if not intents and loose and _not_an_edit(text):
        notes.append("not a picture edit (a question, or words about the planner itself)")
    elif not intents and loose:
        whole = normalise_pronouns(strip_filler(text), pronouns)
        intents.append(EditIntent(kind=FALLBACK_KIND, description=whole,
                                  prompt=fallback_prompt(whole, pronouns, preserved)))
        notes.append("no background, outfit or pose recognised; the whole request is one edit")
    elif loose:
        notes.append(f"not understood, left out: {'; '.join(repr(words) for words in loose)}")
    intents, negative = _route_negations(intents, [s for s in segments if s.role == "negate"])
    positive = " ".join(s.text for s in segments if s.role != "negate")
    return Draft(intents=tuple(intents), negative=negative, planner="rules", note="; ".join(notes) or None,
                 positive_text=positive, kept=tuple(preserved),
                 left_alone=tuple(k for k in KIND_ORDER if k in suppressed))


def _not_an_edit(text: str) -> bool:
    """Words with no edit cue that are plainly not one: a question ("what's 2+2?") or talk to the planner
    ("ignore previous instructions ..."). Sent as one edit, they would be painted into the picture."""
    return text.rstrip().endswith("?") or bool(_QUESTION_WORD.match(text) or _META_TALK.search(text))


def _kept(keeps) -> tuple[set[EditKind], list[str]]:
    """Kinds of edit the user asked to leave alone, and other things to keep ("hair")."""
    suppressed: set[EditKind] = set()
    preserved: list[str] = []
    for segment in keeps:
        for item in _ITEM_SPLIT.split(_KEEP_TAIL.sub("", segment.text)):
            item = _LEADING.sub("", item.strip()).lower()
            if item in _KEPT_KIND:
                suppressed.add(_KEPT_KIND[item])
            elif item and item not in preserved:
                preserved.append(item)
    return suppressed, preserved


def _route_negations(
    intents: list[EditIntent], negations: Sequence[Segment]
) -> tuple[list[EditIntent], tuple[str, ...]]:
    """Each negated thing joins its own kind's step, else the plan-wide negative prompt."""
    by_kind: dict[str | None, list[str]] = {}
    for segment in negations:
        for term in _ITEM_SPLIT.split(segment.text):
            if term := _LEADING.sub("", strip_filler(term)).strip().lower():
                by_kind.setdefault(segment.kind, []).append(term)
    planned = {intent.kind for intent in intents}
    routed = [intent.model_copy(update={"negative": tuple(by_kind.get(intent.kind, ()))}) for intent in intents]
    plan_wide = tuple(term for kind, terms in by_kind.items() if kind not in planned for term in terms)
    return routed, plan_wide


def _background(segments: Sequence[Segment], p: Pronouns, preserved: Sequence[str]) -> EditIntent:
    # A city or country goes last, so "in Paris in a cafe" reads "a cafe in Paris".
    scenes = sorted((s for s in segments if s.role == "scene"), key=lambda s: _names_only_a_city(s.text))
    times = [s for s in segments if s.role == "time"]
    scene = ""
    for index, segment in enumerate(scenes):
        words = _BACKGROUND_WORD.sub("", segment.text)
        if index == 0:
            # "with a beach background" names the place as plainly as "on a beach".
            plain = segment.prep in STRIPPED_PREPOSITIONS or not segment.prep or words != segment.text
            scene = words if plain else f"a scene {segment.prep} {words}"
        else:
            scene += f" {segment.prep or 'in'} {words}" if _names_only_a_city(words) else (
                f" {segment.prep} {words}" if segment.prep else f", {words}")
    if scene:
        when = " ".join(f"{s.prep} {s.text}".strip() for s in times)
    else:
        # With no place, only the light changes: "at sunset" reads as "to sunset".
        when = " and ".join(_LEADING.sub("", s.text) for s in times)
    scene, when = normalise_pronouns(scene, p), normalise_pronouns(when, p)
    description = f"{scene} {when}".strip() if scene else when
    return EditIntent(kind="background", description=description, prompt=background_prompt(scene, when, p, preserved))


def _names_only_a_city(words: str) -> bool:
    return bool(PLACES.search(words)) and not SCENES.search(words)


def _outfit(segments: Sequence[Segment], p: Pronouns, preserved: Sequence[str]) -> EditIntent:
    def joined(role: str) -> str:
        return normalise_pronouns(" and ".join(s.text for s in segments if s.role == role), p)

    replace, costume, adds = joined("replace"), joined("costume"), joined("add")
    if replace and not CLOTHING.search(ACCESSORIES.sub("", replace)):
        # Only accessories ("wearing sunglasses"): add them and keep the outfit.
        replace, adds = "", " and ".join(part for part in (replace, adds) if part)
    description = ", ".join(part for part in (costume, replace, adds) if part)
    return EditIntent(kind="outfit", description=description,
                      prompt=outfit_prompt(replace, costume, adds, p, preserved))


def _pose(segments: Sequence[Segment], p: Pronouns, preserved: Sequence[str]) -> EditIntent:
    poses = []
    for segment in segments:
        first, _, rest = segment.text.partition(" ")
        gerund = GERUNDS.get(first.lower(), first.lower())
        poses.append(f"{gerund} {rest}".strip())
    description = normalise_pronouns(", ".join(poses), p)
    return EditIntent(kind="pose", description=description, prompt=pose_prompt(description, p, preserved))

