"""Reading one request into segments: each is an edit (or a negation, or a thing to keep) and its words.

A request is cut into pieces at punctuation and at "and", "but", "while", "then". Inside a piece,
cues are found left to right: labels ("outfit: ..."), keep and negation words, wear/dress verbs,
pose words, and prepositions whose following phrase names a place, a time or clothing ("in a cafe",
"in a red dress", "at sunset"). A cue claims its words so a later cue cannot start inside them
("at a dance club" is a place, not a dance). A segment runs from its cue to the next cue. Words
before the first cue of a piece continue the previous segment ("wearing jeans and a white t-shirt")
unless they plainly name another kind of edit ("on a beach, red dress").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.planner.planning.decision import EditKind
from services.planner.planning.vocabulary import (
    CLOTHING, FILLER, PLACES, POSE_CUE, POSE_NOUNS, PREPOSITIONS, SCENES, TIMES, WINDOW_STOP, hits,
)

__all__ = ["Segment", "classify", "read_segments", "strip_filler"]

# Roles: scene/time (background), replace/add/costume (outfit), pose, negate, keep, loose (unplaced).
_KIND_OF_ROLE: dict[str, EditKind] = {
    "scene": "background", "time": "background", "replace": "outfit", "add": "outfit",
    "costume": "outfit", "pose": "pose",
}


@dataclass
class Segment:
    """Words of the request with the role they play; `kind` is None for unplaced words."""

    role: str
    kind: EditKind | None
    # (joiner, words): words from later pieces join with ", " or " and " as the user wrote them.
    parts: list[tuple[str, str]] = field(default_factory=list)
    prep: str = ""

    @property
    def text(self) -> str:
        return "".join(joiner + words for joiner, words in self.parts).strip()

    def add(self, joiner: str, words: str) -> None:
        if words := _TRAILING.sub("", words.strip()):
            self.parts.append((joiner if self.parts else "", words))


@dataclass(frozen=True)
class _Cue:
    start: int
    end: int
    body: int
    rank: int
    role: str
    prep: str = ""
    whole_piece: bool = False

    @property
    def kind(self) -> EditKind | None:
        return _KIND_OF_ROLE.get(self.role)


_TRAILING = re.compile(r"(?:[\s,;:.!?]+|\s+(?:and|with|while|but|or|then|also|so|plus)\b)+$", re.IGNORECASE)
_SPLIT = re.compile(r"(\s*[,;.!?\n]+\s*|\s+(?:and|but|while|then|plus|&)\s+)", re.IGNORECASE)
_LABEL = re.compile(r"\b(background|scene|setting|location|backdrop|outfit|clothes|clothing|attire|pose)\s*:\s*", re.I)
# "change (only) the background (only) to ...": "only"/"just" say what is left alone, not what it becomes.
_CHANGE = re.compile(
    r"\b(?:change|set|make|switch|replace|swap)\s+(?:(?:only|just)\s+)?(?:the\s+|her\s+|his\s+|their\s+)?"
    r"(background|backdrop|scene|setting|location|outfit|clothes|clothing|pose|position)\s+(?:(?:only|just)\s+)?"
    r"(?:to|into|with|for)\s+",
    re.I,
)
_KEEP = re.compile(
    r"\b(?:keep(?:ing)?|preserve|leave|don'?t\s+change|do\s+not\s+change|without\s+changing|no\s+changes?\s+to|same)\b",
    re.I,
)
_NEGATE = re.compile(r"\b(?:not|no|without|never|avoid|don'?t|do\s+not|doesn'?t|does\s+not)\b", re.I)
_WEAR = re.compile(
    r"\b(?:wearing|wears|wear|clad\s+in|changed?\s+into|dress(?:ed)?\s+(?:(?:her|him|them)\s+)?(?:up\s+)?in)\b", re.I
)
_COSTUME = re.compile(r"\bdress(?:ed)?\s+(?:(?:her|him|them)\s+)?(?:up\s+)?(?:as|like)\b", re.I)
_PUT_ON = re.compile(r"\bput(?:s|ting)?\s+on\b", re.I)
_ADD = re.compile(r"\b(?:add(?:s|ing)?|give\s+(?:her|him|them))\b", re.I)
_PREP = re.compile(
    r"(?<![\w-])(" + "|".join(p.replace(" ", r"\s+") for p in (*PREPOSITIONS, "against", "with")) + r")\s+", re.I
)
_LABEL_ROLE = {"pose": "pose", "outfit": "replace", "clothes": "replace", "clothing": "replace", "attire": "replace",
               "position": "pose"}
# Which roles the phrase after a preposition may take: "in" leads to places and clothes alike.
_PREP_ROLES = {
    "in": ("replace", "scene", "pose", "time"), "inside": ("scene",), "into": ("replace", "scene"),
    "with": ("add", "scene"), "during": ("time",), "within": ("scene",),
}
_DEFAULT_PREP_ROLES = ("scene", "time")
_CATEGORIES = (("replace", CLOTHING), ("scene", SCENES), ("scene", PLACES), ("pose", POSE_NOUNS), ("time", TIMES))


def classify(text: str, roles: tuple[str, ...] = ("replace", "scene", "pose", "time")) -> tuple[str, int] | None:
    """The role the words name (clothing beats place beats pose beats time) and where its last hit ends."""
    for role, pattern in _CATEGORIES:
        wanted = "add" if role == "replace" and "add" in roles else role
        if wanted in roles and (found := hits(pattern, text)):
            return wanted, found[-1].end()
    if "pose" in roles and (found := hits(POSE_CUE, text)):
        return "pose", found[-1].end()
    return None


def strip_filler(text: str) -> str:
    """Drop how-people-ask words at the start ("can you send me a pic of you ...")."""
    return FILLER.sub("", text.strip(" ,;:")).strip(" ,;:")


def read_segments(text: str) -> list[Segment]:
    """Every segment of the request, in the order written."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    tokens = _SPLIT.split(text)
    segments: list[Segment] = []
    for index in range(0, len(tokens), 2):
        separator = tokens[index - 1] if index else ""
        _read_piece(tokens[index], _joiner(separator), segments)
    return [s for s in segments if s.text]


def _joiner(separator: str) -> str:
    word = separator.strip().lower()
    return f" {word} " if word in ("and", "&", "plus") else ", "


def _read_piece(piece: str, joiner: str, segments: list[Segment]) -> None:
    taken = _take(_cues(piece))
    loose = strip_filler(piece[:taken[0].start] if taken else piece)
    if loose:
        _place_loose(loose, joiner, segments)
    index = 0
    while index < len(taken):
        cue = taken[index]
        after = taken[index + 1] if index + 1 < len(taken) else None
        if cue.role == "negate" and after is not None and not strip_filler(piece[cue.end:after.start]):
            # "not in a dress", "don't put her in a dress": the cue right after is what is negated.
            end = taken[index + 2].start if index + 2 < len(taken) else len(piece)
            _append(segments, Segment("negate", after.kind, prep=after.prep), piece[after.body:end])
            index += 2
            continue
        end = after.start if after is not None and not cue.whole_piece else len(piece)
        _append(segments, Segment(cue.role, cue.kind, prep=cue.prep), piece[cue.body:end])
        index += 1


def _place_loose(words: str, joiner: str, segments: list[Segment]) -> None:
    """Words with no cue: they continue the previous segment unless they name another kind of edit."""
    found = classify(words)
    kind = _KIND_OF_ROLE.get(found[0]) if found else None
    previous = segments[-1] if segments else None
    if previous is not None and previous.role == "keep" and joiner.strip() == "and":
        # "keep her hair and the background": the list of things kept goes on; "the background" is kept.
        previous.add(joiner, words)
        return
    if previous is not None and previous.role != "loose" and (kind is None or kind == previous.kind):
        previous.add(joiner, words)
    else:
        _append(segments, Segment(found[0] if found else "loose", kind), words)


def _append(segments: list[Segment], segment: Segment, words: str) -> None:
    segment.add("", words)
    if segment.role == "negate" and segment.kind is None and (found := classify(segment.text)):
        # "no hat": what is negated decides which step's negative prompt it joins.
        segment.kind = _KIND_OF_ROLE.get(found[0])
    segments.append(segment)


def _take(cues: list[_Cue]) -> list[_Cue]:
    """Left to right, the first cue at each place wins and claims its words."""
    taken: list[_Cue] = []
    position = 0
    for cue in sorted(cues, key=lambda c: (c.start, c.rank, -c.end)):
        if cue.start >= position:
            taken.append(cue)
            position = 10**9 if cue.whole_piece else cue.end
    return taken


def _cues(piece: str) -> list[_Cue]:
    cues = [_Cue(m.start(), m.end(), m.end(), 0, _LABEL_ROLE.get(m[1].lower(), "scene"), whole_piece=True)
            for m in _LABEL.finditer(piece)]
    cues += [_Cue(m.start(), m.end(), m.end(), 0, _LABEL_ROLE.get(m[1].lower(), "scene"), whole_piece=True)
             for m in _CHANGE.finditer(piece)]
    cues += [_Cue(m.start(), m.end(), m.end(), 1, "keep", whole_piece=True) for m in _KEEP.finditer(piece)]
    cues += [_Cue(m.start(), m.end(), m.end(), 2, "negate") for m in _NEGATE.finditer(piece)]
    cues += [_Cue(m.start(), m.end(), m.end(), 3, "replace") for m in _WEAR.finditer(piece)]
    cues += [_Cue(m.start(), m.end(), m.end(), 3, "costume") for m in _COSTUME.finditer(piece)]
    cues += [_Cue(m.start(), m.end(), m.end(), 3, "add") for m in _PUT_ON.finditer(piece)]
    cues += [_Cue(m.start(), m.end(), m.start(), 4, "pose") for m in POSE_CUE.finditer(piece)]
    for match in _ADD.finditer(piece):
        cues += _phrase_cue(piece, match, ("add", "scene", "time"), rank=3)
    for match in _PREP.finditer(piece):
        prep = " ".join(match[1].lower().split())
        cues += _phrase_cue(piece, match, _PREP_ROLES.get(prep, _DEFAULT_PREP_ROLES), rank=5, prep=prep)
    return cues


def _phrase_cue(piece: str, match: re.Match[str], roles: tuple[str, ...], *, rank: int, prep: str = "") -> list[_Cue]:
    """A cue for a preposition (or verb) whose following phrase names something of an allowed role."""
    start = match.end()
    if _NEGATE.match(piece, start):
        return []
    stop = WINDOW_STOP.search(piece, start)
    window = piece[start:stop.start() if stop else len(piece)]
    found = classify(window, roles)
    if found is None:
        return []
    role, hit_end = found
    return [_Cue(match.start(), start + hit_end, start, rank, role, prep=prep)]
