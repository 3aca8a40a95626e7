"""The planner's LLM settings: from the environment to the shared client's settings, bounds included."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.planner.service import llm_settings
from services.planner.settings import PlannerSettings


def test_no_base_url_means_the_rules_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIKENESS_LLM_BASE_URL", raising=False)
    assert llm_settings(PlannerSettings()) is None


def test_timeout_output_bound_and_temperature_reach_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIKENESS_LLM_BASE_URL", "http://127.0.0.1:8080/v1")
    monkeypatch.setenv("LIKENESS_LLM_MODEL", "qwen2.5-1.5b-instruct")
    monkeypatch.setenv("LIKENESS_LLM_TIMEOUT_S", "12")
    monkeypatch.setenv("LIKENESS_LLM_TEMPERATURE", "0.2")
    llm = llm_settings(PlannerSettings())
    assert llm is not None
    assert (llm.model, llm.timeout_s, llm.temperature, llm.max_tokens) == ("qwen2.5-1.5b-instruct", 12, 0.2, 800)
    assert llm.api_key == "not-needed"
    monkeypatch.setenv("LIKENESS_LLM_MAX_TOKENS", "10")
    with pytest.raises(ValidationError, match="llm_max_tokens"):
        PlannerSettings()


def test_the_retry_ladder_is_on_with_the_renderers_face_restore_and_an_empty_template_means_none(
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = PlannerSettings()
    assert (settings.retry_ladder, settings.restore_template) == (True, "face_restore")
    monkeypatch.setenv("LIKENESS_RESTORE_TEMPLATE", "")
    monkeypatch.setenv("LIKENESS_RETRY_LADDER", "false")
    assert (PlannerSettings().retry_ladder, PlannerSettings().restore_template) == (False, None)
