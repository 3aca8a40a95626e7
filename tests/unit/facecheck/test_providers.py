"""onnxruntime's CUDA provider is used when the installed build and machine have it, CPU otherwise."""

from __future__ import annotations

import onnxruntime
import pytest

from services.facecheck.insightface_encoder import choose_providers


def test_cuda_first_when_present_with_cpu_to_fall_back_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert choose_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_cpu_alone_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["AzureExecutionProvider", "CPUExecutionProvider"])
    assert choose_providers() == ["CPUExecutionProvider"]
