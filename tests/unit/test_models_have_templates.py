"""Every model the planner may choose names a workflow template the renderer ships."""

from services.planner.planning import Registry
from services.renderer.templates import TemplateLibrary


def test_every_planner_model_has_a_renderer_template() -> None:
    templates = set(TemplateLibrary.load().names)
    registry = Registry.load()
    missing = {m.name: m.template for m in registry.models.values() if m.template not in templates}
    assert not missing, f"models whose template the renderer lacks: {missing}"
