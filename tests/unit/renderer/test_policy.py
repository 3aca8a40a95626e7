"""Backend choice and idle freeing as pure decisions."""

from __future__ import annotations

from services.renderer.policy import BackendView, foreign_load, preference, serves, should_free


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
