"""The planner service's settings: the shared runtime settings plus its own (prefix LIKENESS_)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from contracts.subjects import validate_token
from services.planner.thresholds import ThresholdRule
from services.runtime.settings import RuntimeSettings

__all__ = ["PlannerSettings"]


class PlannerSettings(RuntimeSettings):
    """Settings of the planner service: the saga's policy and the optional LLM."""

    service_name: str = "planner"

    # Face similarity (0..100) a step must reach; a character may set its own.
    threshold: float = Field(default=40.0, ge=0, le=100)
    max_retries: int = Field(default=3, ge=0, le=10)
    on_exhausted: Literal["fail", "accept_best"] = "fail"
    # A drifted step climbs the retry ladder (services/planner/saga/ladder.py) instead of re-rolling the seed only.
    retry_ladder: bool = True
    # The renderer template of the ladder's face-restore pass (a built-in of the renderer); empty: no such pass,
    # e.g. for a renderer whose templates folder lacks it.
    restore_template: str | None = "face_restore"

    @field_validator("restore_template", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    # A character's threshold learned from its kept scores (`services.planner.thresholds`): the quantile of
    # the last `window` scores minus the margin, within [floor, threshold], once `min_scores` were kept.
    # The floor stays above what impostors score: dlib with its shipped calibration on real photos
    # (shared/data/face-pairs) scored different people at most 36.6, so 37 (CALIBRATION.md).
    threshold_learning: bool = True
    threshold_learn_quantile: float = Field(default=0.1, ge=0, le=1)
    threshold_learn_margin: float = Field(default=5.0, ge=0, le=100)
    threshold_learn_floor: float = Field(default=37.0, ge=0, le=100)
    threshold_learn_min_scores: int = Field(default=8, ge=1, le=1000)
    threshold_learn_window: int = Field(default=50, ge=1, le=1000)
    # Cumulative drift (sum over accepted steps of 100 - similarity to the picture each edited) past which the
    # next step edits the reference image again; None: never. About 43 per edit at dlib's median same-person
    # score (57), so 150 lets three or four edits in a row build on each other before one is re-anchored.
    drift_budget: float | None = Field(default=150.0, gt=0)

    # Any OpenAI-compatible endpoint; with no base URL the rule-based planner serves.
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr = SecretStr("")
    llm_timeout_s: float = Field(default=30.0, gt=0)
    # A plan is a few hundred tokens of JSON: the bound keeps a runaway answer from running to the timeout.
    llm_max_tokens: int = Field(default=800, ge=64, le=8192)
    # None leaves the server's default (some models reject any other value).
    llm_temperature: float | None = Field(default=None, ge=0, le=2)
    # Sampling seed sent with every plan request (None: the server's own).
    llm_seed: int | None = None
    # Price of a model the shared price table does not list (USD per 1M tokens), e.g. a private deployment.
    llm_price_input: float | None = Field(default=None, ge=0)
    llm_price_output: float | None = Field(default=None, ge=0)

    # The content bound of users until accounts carry their own, and the style of unknown characters.
    user_max_rating: Literal["sfw", "suggestive", "nsfw"] = "sfw"
    default_style: str = "photoreal"

    # How many messages each consumer handles at once in this process.
    workers: int = Field(default=8, ge=1, le=256)

    # The service names (their LIKENESS_SERVICE_NAME) whose dead letters the planner reads: a command the
    # renderer or facecheck gave up on ends its chain's attempt, and a chain request the planner itself
    # gave up on is refused with the reason, instead of leaving the chain (or its requester) waiting forever.
    # Dead-letter consumers never dead-letter, so reading its own cannot loop.
    dead_letters_of: tuple[str, ...] = ("renderer", "facecheck", "planner")

    @model_validator(mode="after")
    def _llm_complete(self) -> PlannerSettings:
        if self.llm_base_url and not self.llm_model:
            raise ValueError("LIKENESS_LLM_MODEL is required when LIKENESS_LLM_BASE_URL is set")
        if (self.llm_price_input is None) != (self.llm_price_output is None):
            raise ValueError("set both LIKENESS_LLM_PRICE_INPUT and LIKENESS_LLM_PRICE_OUTPUT, or neither")
        return self

    @model_validator(mode="after")
    def _learning_bounds(self) -> PlannerSettings:
        if self.threshold_learn_window < self.threshold_learn_min_scores:
            raise ValueError("LIKENESS_THRESHOLD_LEARN_WINDOW must hold at least LIKENESS_THRESHOLD_LEARN_MIN_SCORES")
        return self

    def threshold_rule(self) -> ThresholdRule:
        """The learning rule these settings describe (the default threshold as its ceiling; a floor above a
        lowered default is the default: learning then changes nothing)."""
        return ThresholdRule(quantile=self.threshold_learn_quantile, margin=self.threshold_learn_margin,
                             floor=min(self.threshold_learn_floor, self.threshold), ceiling=self.threshold,
                             min_scores=self.threshold_learn_min_scores, window=self.threshold_learn_window)

    @model_validator(mode="after")
    def _dead_letter_subjects(self) -> PlannerSettings:
        for service in self.dead_letters_of:
            validate_token(service)
        return self
