"""Fixtures of the tests that run the whole system (tests/e2e, tests/browser), loaded by tests/conftest.py.

Each test module defines its own module-scoped `workdir`; these fixtures put their files there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.comfy_script import ComfyScript
from tests.e2e.fakes import FakeComfy
from tests.faces import face_of


@pytest.fixture(scope="module")
def photo(workdir: Path) -> Path:
    """The character's reference photo: person 0 of tests.faces."""
    path = workdir / "reference.png"
    path.write_bytes(face_of(0))
    return path


@pytest.fixture(scope="module")
def comfy(workdir: Path) -> Iterator[FakeComfy]:
    fake = FakeComfy(workdir)
    try:
        yield fake
    finally:
        fake.process.stop()


@pytest.fixture
def script(comfy: FakeComfy) -> ComfyScript:
    """The fake ComfyUI's outcome queue, emptied for each test (an empty queue renders "same")."""
    comfy.script.reset()
    return comfy.script
