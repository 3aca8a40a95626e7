"""The shared runtime settings of a cluster: several NATS URLs, and how many copies JetStream keeps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.runtime.settings import RuntimeSettings, nats_servers


def test_one_copy_of_each_stream_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIKENESS_STREAM_REPLICAS", raising=False)
    assert RuntimeSettings().stream_replicas == 1
    monkeypatch.setenv("LIKENESS_STREAM_REPLICAS", "3")
    assert RuntimeSettings().stream_replicas == 3


@pytest.mark.parametrize("replicas", ["0", "6", "three"])
def test_a_replica_count_jetstream_cannot_keep_is_refused(monkeypatch: pytest.MonkeyPatch, replicas: str) -> None:
    monkeypatch.setenv("LIKENESS_STREAM_REPLICAS", replicas)
    with pytest.raises(ValidationError, match="stream_replicas"):
        RuntimeSettings()


def test_a_cluster_is_a_comma_separated_list_of_its_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIKENESS_NATS_URL", "nats://10.0.0.1:4222, nats://10.0.0.2:4222,,tls://10.0.0.3:4222 ")
    assert RuntimeSettings().nats_servers == ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "tls://10.0.0.3:4222"]
    assert RuntimeSettings(nats_url="nats://127.0.0.1:4222").nats_servers == ["nats://127.0.0.1:4222"]


@pytest.mark.parametrize(("urls", "error"), [
    (" , ", "names no server"),
    ("nats://a:4222,http://b:8222", "'http://b:8222' is not a nats://"),
])
def test_a_nats_url_list_without_a_usable_server_is_refused(urls: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        nats_servers(urls)
    with pytest.raises(ValidationError, match=error):
        RuntimeSettings(nats_url=urls)
