"""The planning domain: request text -> ordered edit steps (or a refusal). Pure, except the LLM adapter.

    text, modifiers = parse_modifiers("on a beach, sitting --seed 7")      # modifiers.py
    draft = draft_by_rules(text, "woman")                                   # rules.py (or LlmPlanner.draft)
    decision = plan_request(text, modifiers, character, user, registry,     # plan.py -> Plan | Refusal
                            seed_source=random.Random(), draft=draft)

`Planner` (request_planner.py) does all of it in one call and turns user errors into refusals.
"""

from services.planner.planning.decision import KIND_ORDER, Draft, EditIntent, Plan, PlanDecision, Refusal
from services.planner.planning.errors import (
    InvalidLlmAnswer, InvalidModifier, LlmError, LlmUnavailable, LoraStackTooLarge, PlanningError, RegistryError,
    UnknownName,
)
from services.planner.planning.llm import LlmPlanner
from services.planner.planning.loras import MAX_LORAS_PER_STEP, character_strength, choose_loras, stack_loras
from services.planner.planning.modifiers import Modifiers, ParsedRequest, parse_modifiers
from services.planner.planning.plan import derive_seed, plan_request, step_seed
from services.planner.planning.request_planner import Planner
from services.planner.planning.content_policy import ContentLimit, content_limit
from services.planner.planning.profiles import CharacterProfile, Rating, UserPolicy
from services.planner.planning.registry import ContentWords, LoraSpec, ModelSpec, Registry, StyleSpec
from services.planner.planning.rules import draft_by_rules

__all__ = [
    "KIND_ORDER", "MAX_LORAS_PER_STEP", "CharacterProfile", "ContentLimit", "ContentWords", "Draft", "EditIntent",
    "InvalidLlmAnswer", "InvalidModifier", "LlmError", "LlmPlanner", "LlmUnavailable", "LoraSpec",
    "LoraStackTooLarge", "ModelSpec", "Modifiers", "ParsedRequest", "Plan", "PlanDecision",
    "Planner", "PlanningError", "Rating", "Refusal", "Registry", "RegistryError", "StyleSpec", "UnknownName",
    "UserPolicy", "character_strength", "choose_loras", "content_limit", "derive_seed", "draft_by_rules",
    "parse_modifiers", "plan_request", "stack_loras", "step_seed",
]
