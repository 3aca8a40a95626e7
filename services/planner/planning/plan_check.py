"""An LLM's plan checked against the request before it is used, with the rules' reading as the floor.

Small models answer with a valid plan that is wrong: they drop a negation ("no hat"), a place or a
whole kind of edit the user named, copy the prompt's example ("beach") into an unrelated request, or
invent a scene for a message that asks for nothing ("what's 2+2?"). The rules read the same request
deterministically; where they saw something the model lost, it is put back:

* a step whose words are not in the request (nor a kept or negated thing) is invented: dropped;
* a kind of edit the user said to leave alone ("keep the background") is dropped;
* a kind the rules planned and the model did not is added from the rules;
* a step whose place, clothes or pose (the rules' words for it) the model lost is the rules' step;
* every negated thing joins the negative prompt of its kind's step (else the plan-wide one), and
  every kept thing ("hair") the keep clause of every step.

Each change is said in the draft's note. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from services.planner.planning.decision import KIND_ORDER, Draft, EditIntent
from services.planner.planning.instructions import PRONOUNS
from services.planner.planning.profiles import Gender

__all__ = ["reconcile"]

# Words every instruction uses, whatever it asks: they ground nothing.
_TEMPLATE_WORDS = frozenset("""
a an the and or but with without of to in on at into onto for from by as is are be her his their she he they
them him person people character change changes changed make set put keep keeping kept unchanged same edit
picture image photo background backdrop scene setting outfit clothes clothing attire pose position posture
face identity body expression while also only just new now then so this that it its very some one
wear wearing wears dressed dress standing looking look""".split())
_WORD = re.compile(r"[a-z][a-z'-]+")


def reconcile(llm: Draft, rules: Draft, request_text: str, gender: Gender) -> Draft:
    """The LLM's draft, corrected by what the rules read in `request_text` (see the module docstring)."""
    notes: list[str] = []
    request_words = _stems(request_text)
    negated = {term for intent in rules.intents for term in intent.negative} | set(rules.negative)
    negated_words = _stems(" ".join(negated))
    by_kind = {intent.kind: intent for intent in llm.intents}
    rules_by_kind = {intent.kind: intent for intent in rules.intents}

    for kind, intent in list(by_kind.items()):
        grounded = (_stems(intent.prompt) - negated_words) & request_words
        if kind in rules.left_alone:
            notes.append(f"left the {kind} alone as asked (the model changed it)")
            del by_kind[kind]
        elif not grounded and kind not in rules_by_kind:
            notes.append(f"dropped the model's {kind} step: nothing in it is in the request")
            del by_kind[kind]
    for kind, rule_intent in rules_by_kind.items():
        if kind not in by_kind:
            notes.append(f"added the {kind} step the model left out")
            by_kind[kind] = rule_intent
        elif (theirs := _stems(rule_intent.description)) and not theirs & _stems(by_kind[kind].prompt):
            notes.append(f"the model's {kind} step lost {rule_intent.description!r}: the rules' step is used")
            by_kind[kind] = rule_intent

    intents = [by_kind[kind] for kind in KIND_ORDER if kind in by_kind]
    intents, plan_wide = _with_negations(intents, rules, llm.negative)
    intents = [_with_kept(intent, rules.kept, gender) for intent in intents]
    note = "; ".join(n for n in (llm.note, *notes) if n) or None
    return llm.model_copy(update={"intents": tuple(intents), "negative": plan_wide, "note": note})


def _with_negations(intents: list[EditIntent], rules: Draft,
                    plan_wide: tuple[str, ...]) -> tuple[list[EditIntent], tuple[str, ...]]:
    """Each negated thing the rules read in the negative prompt of its kind's step, else plan-wide."""
    planned = {intent.kind for intent in intents}
    wide = list(plan_wide)
    for term in rules.negative:
        _add(wide, [term])
    for rule_intent in rules.intents:
        if rule_intent.kind not in planned:
            _add(wide, rule_intent.negative)
    merged = []
    for intent in intents:
        theirs = next((r.negative for r in rules.intents if r.kind == intent.kind), ())
        terms = list(intent.negative)
        _add(terms, theirs)
        merged.append(intent.model_copy(update={"negative": tuple(terms)}))
    return merged, tuple(wide)


def _with_kept(intent: EditIntent, kept: Iterable[str], gender: Gender) -> EditIntent:
    """The step's instruction also says to keep what the user said to keep, unless it already does."""
    missing = [thing for thing in kept if not _stems(thing) <= _stems(intent.prompt)]
    if not missing:
        return intent
    possessive = PRONOUNS[gender].possessive
    clause = f", keep {possessive} {' and '.join(missing)} unchanged"
    return intent.model_copy(update={"prompt": intent.prompt.rstrip(" .") + clause})


def _add(terms: list[str], more: Iterable[str]) -> None:
    for term in more:
        if term.lower() not in (t.lower() for t in terms):
            terms.append(term)


def _stems(text: str) -> set[str]:
    """Content words, crudely stemmed: "waving" and "wave", "snowy" and "snow", "sitting" and "sit" meet."""
    return {_stem(word) for word in _WORD.findall(text.lower()) if word not in _TEMPLATE_WORDS}


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] == word[-2]:
        word = word[:-1]
    return word[:4]


_SUFFIXES = ("ing", "ed", "es", "s", "y", "e")
