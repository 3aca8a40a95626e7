"""Every model the planner may choose names a workflow template the renderer ships, with the slots its jobs need."""

from services.planner.planning import Registry
from services.renderer.templates import TemplateLibrary


def test_every_planner_model_has_a_renderer_template() -> None:
    templates = set(TemplateLibrary.load().names)
    registry = Registry.load()
    missing = {m.name: m.template for m in registry.models.values() if m.template not in templates}
    assert not missing, f"models whose template the renderer lacks: {missing}"


def test_no_model_is_given_more_loras_than_its_template_has_slots_for() -> None:
    library = TemplateLibrary.load()
    too_many = {}
    for model in Registry.load().models.values():
        room = library.get(model.template).lora_capacity
        if room is not None and model.max_loras > room:
            too_many[model.name] = f"max_loras {model.max_loras}, template {model.template} has {room} slot(s)"
    assert not too_many, f"the planner would send jobs the renderer refuses: {too_many}"


def test_edit_templates_take_an_input_image_and_text_to_image_ones_do_not() -> None:
    library = TemplateLibrary.load()
    for model in Registry.load().models.values():
        assert library.get(model.template).edit == (model.kind == "edit"), model.name
