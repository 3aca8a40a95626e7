"""The OpenAPI document tells the truth: schemathesis (every check, every phase, stateful included) against
the gateway of `likeness up`, with rate limits raised so its traffic is judged, not throttled.

Bounded (a fixed number of examples per operation, deterministic generation), so it runs in seconds;
what JSON Schema cannot say about the API is in tests/e2e/schemathesis.toml with the reason for each line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.stack import REPO, Stack, clean_env, started

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

EXAMPLES_PER_OPERATION = 15


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from started(Stack(tmp_path_factory.mktemp("openapi") / "stack", env={
        "LIKENESS_GATEWAY_RATE_PER_S": "10000", "LIKENESS_GATEWAY_RATE_BURST": "10000"}))


def test_schemathesis_finds_no_server_error_and_no_mismatch(stack: Stack, tmp_path: Path) -> None:
    gateway = f"http://127.0.0.1:{stack.port}"
    api_key = httpx.post(f"{gateway}/auth/signup", timeout=10).json()["api_key"]
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [str(schemathesis), "--no-color", "--config-file", str(REPO / "tests/e2e/schemathesis.toml"), "run",
         f"{gateway}/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES_PER_OPERATION),
         "--header", f"Authorization: Bearer {api_key}"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=500)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts is not None, output[-3000:]
    generated, passed = map(int, counts.groups())
    operations = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
    assert operations is not None, output[-3000:]
    selected, total, tested = map(int, operations.groups())
    # Every operation was exercised, and every case passed every check.
    assert selected == total == tested >= 25, output[-3000:]
    assert generated == passed >= tested * 5, output[-3000:]
