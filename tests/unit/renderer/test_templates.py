"""Template loading, refusal and binding by node title."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest

from contracts import ImageRef, LoraUse, RenderStep
from services.renderer.bindings import parse_title
from services.renderer.errors import TemplateError
from services.renderer.templates import BUILTIN_DIR, TemplateLibrary, load_template, workflow_hash

IMAGE = ImageRef(sha256="ab" * 32, media_type="image/png", width=512, height=512, bytes=100)


def job(**kw) -> RenderStep:
    fields = dict(chain_id=uuid.uuid4(), step=0, attempt=1, seed=1234, input_image=IMAGE, prompt="on a beach",
                  negative_prompt="blurry", width=768, height=1024, steps=8, cfg=2.5, model="qwen-image-edit",
                  template="qwen_edit")
    return RenderStep(**{**fields, **kw})


def lora(name: str, strength: float = 0.8) -> LoraUse:
    return LoraUse(name=name, strength=strength, role="style")


def write(tmp_path: Path, name: str, graph: dict) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(graph))
    return path


def node(cls: str, title: str | None = None, **inputs) -> dict:
    return {"class_type": cls, "inputs": inputs, **({"_meta": {"title": title}} if title else {})}


def test_the_builtin_templates_load() -> None:
    library = TemplateLibrary.load()
    assert library.names == ("face_restore", "flux_kontext", "flux_t2i", "qwen_edit", "sdxl_t2i")
    qwen = library.get("qwen_edit")
    assert qwen.edit and qwen.input_node == "3" and qwen.output_node == "10"
    assert not library.get("sdxl_t2i").edit


def test_qwen_edit_binds_every_parameter_by_title() -> None:
    bound = TemplateLibrary.load().get("qwen_edit").bind(job(denoise=0.75, loras=(lora("beach_v2"),)),
                                                         input_ref="likeness/abc.png")
    g = bound.graph
    assert g["3"]["inputs"]["image"] == "likeness/abc.png"
    assert (g["4"]["inputs"]["width"], g["4"]["inputs"]["height"]) == (768, 1024)
    assert g["5"]["inputs"]["prompt"] == "on a beach" and g["6"]["inputs"]["prompt"] == "blurry"
    sampler = g["8"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"], sampler["denoise"]) == (1234, 8, 2.5, 0.75)
    assert sampler["sampler_name"] == "euler_ancestral"
    assert g["2"]["inputs"].items() >= {"switch": "On", "lora_name": "beach_v2.safetensors", "strength_model": 0.8,
                                        "strength_clip": 0.8}.items()
    assert (bound.input_node, bound.output_node) == ("3", "10")


def test_unset_denoise_and_no_lora_keep_the_template_defaults_and_switch_off() -> None:
    g = TemplateLibrary.load().get("qwen_edit").bind(job(), input_ref="likeness/abc.png").graph
    assert g["8"]["inputs"]["denoise"] == 0.9 and g["2"]["inputs"]["switch"] == "Off"


def test_binding_never_changes_the_template_itself() -> None:
    template = TemplateLibrary.load().get("qwen_edit")
    before = json.dumps(template.graph, sort_keys=True)
    template.bind(job(seed=99), input_ref="likeness/x.png")
    assert json.dumps(template.graph, sort_keys=True) == before


def test_workflow_hash_is_sha256_of_canonical_json_and_follows_the_parameters() -> None:
    template = TemplateLibrary.load().get("qwen_edit")
    first = template.bind(job(), input_ref="likeness/a.png")
    canonical = json.dumps(first.graph, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert first.workflow_hash == hashlib.sha256(canonical).hexdigest() == workflow_hash(first.graph)
    assert template.bind(job(), input_ref="likeness/a.png").workflow_hash == first.workflow_hash
    assert template.bind(job(seed=2), input_ref="likeness/a.png").workflow_hash != first.workflow_hash
    assert template.bind(job(), input_ref="likeness/b.png").workflow_hash != first.workflow_hash


def test_comfyroll_stack_takes_three_loras_and_refuses_a_fourth() -> None:
    sdxl = TemplateLibrary.load().get("sdxl_t2i")
    g = sdxl.bind(job(template="sdxl_t2i", loras=(lora("a"), lora("b.safetensors", 0.5))), input_ref=None).graph
    stack = g["2"]["inputs"]
    assert (stack["switch_1"], stack["lora_name_1"], stack["model_weight_1"]) == ("On", "a.safetensors", 0.8)
    assert (stack["switch_2"], stack["lora_name_2"], stack["clip_weight_2"]) == ("On", "b.safetensors", 0.5)
    assert (stack["switch_3"], stack["lora_name_3"]) == ("Off", "None")
    with pytest.raises(TemplateError, match="room for 3 LoRA"):
        sdxl.bind(job(loras=tuple(lora(n) for n in "abcd")), input_ref=None)


def test_rgthree_stack_takes_any_number_of_loras() -> None:
    g = TemplateLibrary.load().get("flux_t2i").bind(job(loras=tuple(lora(n) for n in "abcde")), input_ref=None).graph
    loader = g["4"]["inputs"]
    assert loader["lora_5"] == {"on": True, "lora": "e.safetensors", "strength": 0.8}
    assert loader["model"] == ["1", 0] and "PowerLoraLoaderHeaderWidget" in loader


def test_switch_then_stack_share_the_loras_in_order(tmp_path: Path) -> None:
    graph = {"1": node("LoadImage", "input_image", image="x.png"),
             "2": node("LoraLoaderModelOnly", "lora_switch", lora_name="base.safetensors", strength_model=1.0),
             "3": node("CR LoRA Stack", "lora_stack"), "4": node("SaveImage", "output", filename_prefix="x")}
    template = load_template(write(tmp_path, "mixed", graph))
    g = template.bind(job(loras=(lora("first"), lora("second"))), input_ref="in.png").graph
    assert g["2"]["inputs"]["lora_name"] == "first.safetensors"
    assert g["3"]["inputs"]["lora_name_1"] == "second.safetensors"
    off = template.bind(job(), input_ref="in.png").graph
    assert off["2"]["inputs"] == {"lora_name": "base.safetensors", "strength_model": 0.0}


def test_titles_may_name_several_parameters_and_unknown_words_are_ignored() -> None:
    assert parse_title("seed, steps, cfg") == ("seed", "steps", "cfg")
    assert parse_title("Load Checkpoint") == ()
    assert parse_title("width,height, and more") == ("width", "height")
    assert parse_title(None) == ()


def test_primitive_nodes_take_values(tmp_path: Path) -> None:
    graph = {"1": node("LoadImage", "input_image", image="x.png"), "2": node("PrimitiveInt", "seed", value=0),
             "3": node("PrimitiveStringMultiline", "prompt", value=""), "4": node("PreviewImage", "output")}
    g = load_template(write(tmp_path, "prims", graph)).bind(job(), input_ref="in.png").graph
    assert (g["2"]["inputs"]["value"], g["3"]["inputs"]["value"]) == (1234, "on a beach")


@pytest.mark.parametrize(("graph", "message"), [
    ({"1": node("LoadImage", "input_image", image="x.png")}, "exactly one node titled 'output'"),
    ({"1": node("SaveImage", "output")}, "needs a LoadImage titled 'input_image'"),
    ({"1": node("LoadImage", "input_image"), "2": node("SaveImageWebsocket", "output")}, "keeps no history output"),
    ({"1": node("LoadImage", "input_image"), "2": node("SaveImage", "output"), "3": node("VAEDecode", "seed")},
     "node 3 \\(VAEDecode\\) is titled 'seed'"),
    ({"1": node("LoadImage", "input_image"), "2": node("LoadImage", "input_image"), "3": node("SaveImage", "output")},
     "more than one node is titled 'input_image'"),
    ({"1": {"inputs": {}}}, "node 1 lacks class_type"),
    ({"1": node("LoadImage", "input_image"), "2": node("LoadImage", "reference_image"),
      "3": node("LoadImage", "reference_image"), "4": node("SaveImage", "output")}, "at most one node .*'reference_image'"),
    ({"nodes": [], "links": []}, "UI workflow"),
])
def test_bad_templates_are_refused_naming_the_file(tmp_path: Path, graph: dict, message: str) -> None:
    path = write(tmp_path, "broken_edit", graph)
    with pytest.raises(TemplateError, match=message) as info:
        load_template(path)
    assert str(path) in info.value.reason and info.value.kind == "validation"


def test_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.json"
    path.write_text("{nope")
    with pytest.raises(TemplateError, match="garbage.json: cannot read it as JSON"):
        load_template(path)


def test_face_restore_binds_the_picture_and_the_reference_and_keeps_its_own_instruction_and_denoise() -> None:
    template = TemplateLibrary.load().get("face_restore")
    assert (template.input_node, template.reference_node, template.output_node) == ("2", "3", "11")
    bound = template.bind(job(template="face_restore"), input_ref="likeness/best.png", reference_ref="likeness/ref.png")
    g = bound.graph
    assert (g["2"]["inputs"]["image"], g["3"]["inputs"]["image"]) == ("likeness/best.png", "likeness/ref.png")
    assert bound.reference_node == "3"
    # Qwen-Image-Edit-Plus sees both pictures; the restore's own instruction, not the step's prompt, drives it.
    assert (g["6"]["inputs"]["image1"], g["6"]["inputs"]["image2"]) == (["4", 0], ["5", 0])
    assert "Picture 2" in g["6"]["inputs"]["prompt"]
    assert (g["9"]["inputs"]["seed"], g["9"]["inputs"]["denoise"]) == (1234, 0.35)
    other = template.bind(job(template="face_restore"), input_ref="likeness/best.png", reference_ref="likeness/r2.png")
    assert other.workflow_hash != bound.workflow_hash


def test_a_reference_needs_an_edit_template(tmp_path: Path) -> None:
    graph = {"1": node("LoadImage", "reference_image"), "2": node("SaveImage", "output")}
    with pytest.raises(TemplateError, match="only in an edit template"):
        load_template(write(tmp_path, "odd_t2i", graph))


def test_text_to_image_templates_need_no_input_image(tmp_path: Path) -> None:
    template = load_template(write(tmp_path, "plain_t2i", {"1": node("SaveImage", "output")}))
    assert not template.edit and template.input_node is None


def test_a_settings_folder_adds_and_overrides_templates(tmp_path: Path) -> None:
    write(tmp_path, "qwen_edit", {"1": node("LoadImage", "input_image"), "2": node("SaveImage", "output"),
                                  "3": node("CR LoRA Stack", "lora_stack")})
    write(tmp_path, "mine_t2i", {"1": node("SaveImage", "output")})
    library = TemplateLibrary.load([BUILTIN_DIR, tmp_path])
    assert library.get("qwen_edit").source.startswith(str(tmp_path))
    assert "mine_t2i" in library.names and "sdxl_t2i" in library.names


def test_a_replacement_with_fewer_lora_slots_than_the_built_in_stops_start_up(tmp_path: Path) -> None:
    write(tmp_path, "flux_kontext", {"1": node("LoadImage", "input_image"), "2": node("SaveImage", "output")})
    with pytest.raises(TemplateError, match=r"flux_kontext.json: has room for 0 LoRA\(s\), but .*flux_kontext.json, "
                                            r"which it replaces, has room for 2"):
        TemplateLibrary.load([BUILTIN_DIR, tmp_path])


def test_unknown_template_and_missing_folder() -> None:
    with pytest.raises(TemplateError, match="unknown template 'nope'; known: face_restore, flux_kontext, flux_t2i, qwen_edit, sdxl_t2i"):
        TemplateLibrary.load().get("nope")
    with pytest.raises(TemplateError, match="does not exist"):
        TemplateLibrary.load([Path("/no/such/folder")])
