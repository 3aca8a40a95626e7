"""Every RenderStep the saga asks for names the chain's user: the renderer shares its backends by user."""

from __future__ import annotations

from contracts import RenderStep
from tests.unit.planner.test_saga import Driver, start


def test_first_next_and_retried_steps_carry_the_requests_user() -> None:
    run = Driver()
    run(start("background", "pose"))
    run.render(1)
    run.score(10.0)  # drifted: retried
    run.render(2)
    run.score(80.0)  # accepted: the next step
    renders = [c for c in run.commands if isinstance(c, RenderStep)]
    assert [(r.step, r.attempt) for r in renders] == [(0, 1), (0, 2), (1, 1)]
    assert {r.user_id for r in renders} == {"u1"}
