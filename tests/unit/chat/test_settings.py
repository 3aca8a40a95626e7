"""Chat settings: the LLM is all or nothing, blanks mean unset, prices come in pairs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.chat.service import reply_model
from services.chat.settings import ChatSettings


def test_defaults_are_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIKENESS_CHAT_LLM_BASE_URL", "")
    settings = ChatSettings()
    assert settings.chat_llm_base_url is None and reply_model(settings) is None


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIKENESS_CHAT_LLM_BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("LIKENESS_CHAT_LLM_MODEL", "llama3.1")
    monkeypatch.setenv("LIKENESS_CHAT_LLM_API_KEY", "sk-secret")
    monkeypatch.setenv("LIKENESS_CHAT_LLM_TIMEOUT_S", "12")
    monkeypatch.setenv("LIKENESS_CHAT_LLM_TEMPERATURE", "0.7")
    monkeypatch.setenv("LIKENESS_CHAT_LLM_SEED", "7")
    monkeypatch.setenv("LIKENESS_CHAT_LLM_WISH_CHECK", "always")
    settings = ChatSettings()
    assert settings.chat_llm_model == "llama3.1" and settings.chat_llm_timeout_s == 12
    assert settings.chat_llm_wish_check == "always"
    assert "sk-secret" not in repr(settings)
    llm = reply_model(settings)
    assert llm is not None and llm.model == "llama3.1"
    sent = llm._client.settings  # what every request of this model carries
    assert (sent.temperature, sent.seed, sent.max_tokens, sent.timeout_s) == (0.7, 7, 400, 12)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"chat_llm_base_url": "http://x/v1"}, "LIKENESS_CHAT_LLM_MODEL is required"),
        ({"chat_llm_price_input": 1.0}, "set both"),
        ({"chat_llm_timeout_s": 0}, "chat_llm_timeout_s"),
        ({"chat_llm_wish_check": "sometimes"}, "chat_llm_wish_check"),
    ],
)
def test_invalid_settings_fail_fast(values: dict, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        ChatSettings(**values)
