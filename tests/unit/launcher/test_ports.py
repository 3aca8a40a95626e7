"""Ports of the services `likeness up` starts: never the same port twice in one run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.launcher import supervisor


def test_a_port_the_kernel_offers_again_is_not_given_to_a_second_service(monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel may hand out a just-probed port again until its service binds it: here 5001 comes back twice.
    offered: Iterator[int] = iter([5001, 5001, 8000, 5001, 5002])
    monkeypatch.setattr(supervisor, "free_port", lambda: next(offered))
    taken = {8000}  # the gateway's fixed port
    assert [supervisor.unused_port(taken) for _ in range(2)] == [5001, 5002]
    assert taken == {8000, 5001, 5002}
