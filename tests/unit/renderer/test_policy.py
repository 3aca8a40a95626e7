"""Backend choice, waiting for a backend and idle freeing as pure decisions."""

from __future__ import annotations

from services.renderer.backend_policy import (
    BackendView,
    available,
    foreign_load,
    next_probe_in,
    preference,
    serves,
    should_free,
    unreachable_reason,
)


def view(url: str, **kw) -> BackendView:
    return BackendView(url=url, healthy=kw.pop("healthy", True), **kw)


def test_least_loaded_healthy_backend_first() -> None:
    views = [view("a", in_flight=2), view("b", in_flight=0, foreign=1), view("c", in_flight=0)]
    assert preference(views, "m", None) == ["c", "b", "a"]


def test_foreign_queue_counts_as_load() -> None:
    assert preference([view("a", foreign=3), view("b", in_flight=2)], "m", None) == ["b", "a"]


def test_ties_go_to_the_least_recently_used_then_listed_order() -> None:
    assert preference([view("a", last_used=5.0), view("b", last_used=1.0), view("c", last_used=1.0)], "m", None) \
        == ["b", "c", "a"]


def test_down_backends_come_last_but_are_still_tried() -> None:
    assert preference([view("a", healthy=False), view("b", in_flight=9)], "m", None) == ["b", "a"]


def test_routing_by_declared_models_and_styles() -> None:
    anime = view("anime", models=frozenset({"qwen"}), styles=frozenset({"anime"}))
    photo = view("photo", models=frozenset({"qwen"}), styles=frozenset({"photo"}))
    anything = view("any")
    flux = view("flux", models=frozenset({"flux"}))
    views = [anime, photo, anything, flux]
    assert preference(views, "qwen", "anime") == ["anime", "any"]
    assert preference(views, "qwen", None) == ["anime", "photo", "any"]
    assert preference(views, "flux", "photo") == ["any", "flux"]
    assert preference([anime], "sdxl", None) == []
    assert serves(anything, "whatever", "any style")


def test_foreign_load_never_negative() -> None:
    assert foreign_load(5, 2) == 3
    assert foreign_load(1, 2) == 0


def test_free_once_after_the_idle_period() -> None:
    assert should_free(in_flight=0, last_active=100.0, freed=False, now=700.0, idle_s=600)
    assert not should_free(in_flight=0, last_active=100.0, freed=False, now=699.0, idle_s=600)
    assert not should_free(in_flight=1, last_active=100.0, freed=False, now=900.0, idle_s=600)
    assert not should_free(in_flight=0, last_active=100.0, freed=True, now=900.0, idle_s=600)
    assert not should_free(in_flight=0, last_active=None, freed=False, now=900.0, idle_s=600)


def test_after_a_probe_only_healthy_backends_serving_the_job_are_taken_best_first() -> None:
    views = [view("a", healthy=False), view("b", in_flight=2), view("c"), view("flux", models=frozenset({"flux"}))]
    assert available(views, "qwen", None) == ["c", "b"]
    assert available([view("a", healthy=False)], "qwen", None) == []


def probe_times(limit_s: float) -> list[float]:
    """When the probes of a wait fall (seconds since it began), if every probe finds nobody."""
    times, waited, probes = [], 0.0, 0
    while (delay := next_probe_in(waited, limit_s, probes)) is not None:
        waited += delay
        probes += 1
        times.append(waited)
    return times


def test_the_wait_re_probes_with_a_doubling_back_off_capped_at_five_seconds() -> None:
    assert probe_times(30) == [0.5, 1.5, 3.5, 7.5, 12.5, 17.5, 22.5, 27.5, 30.0]


def test_the_last_probe_falls_at_the_end_of_the_wait() -> None:
    assert probe_times(1) == [0.5, 1.0]
    assert probe_times(0.2) == [0.2]
    # Probes take time too: once the limit is used up, no more sleeping.
    assert next_probe_in(1.3, 1.0, 2) is None


def test_a_wait_of_zero_gives_up_at_once() -> None:
    assert next_probe_in(0.0, 0.0, 0) is None
    assert probe_times(0) == []


def test_the_unreachable_reason_says_how_long_it_waited_and_what_it_tried() -> None:
    failures = {"http://a": "cannot connect to http://a: refused", "http://b": "cannot connect to http://b: refused"}
    reason = unreachable_reason(30.04, 30.0, failures)
    assert reason == ("no ComfyUI backend could take the job after waiting 30.0 s for one to come back; tried "
                      "http://a (cannot connect to http://a: refused), http://b (cannot connect to http://b: refused)")
    assert unreachable_reason(0.0, 0.0, {"http://a": "x"}) == \
        "no ComfyUI backend could take the job (waiting for one is off); tried http://a (x)"
