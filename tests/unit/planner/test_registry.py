"""Registries: the shipped data loads, and every broken file or entry is named in a clear error."""

from __future__ import annotations

import json

import pytest

from services.planner.planning import Registry, RegistryError, UnknownName
from tests.unit.planner.conftest import shipped_documents


def test_shipped_registry_loads_and_is_consistent(registry):
    assert registry.default_style in registry.styles
    for style in registry.styles.values():
        assert registry.model(style.model).kind == "edit"
        if style.lora:
            assert registry.lora(style.lora).purpose == "style"
    assert {lora.rating for lora in registry.loras.values()} <= {"sfw", "suggestive", "nsfw"}
    assert registry.model("qwen-image-edit").template == "qwen_edit"
    assert registry.model("qwen-image-edit").steps == 8
    assert registry.style("anime").lora == "anime-lines"


def test_lookups_of_unknown_names_list_the_known_ones(registry):
    with pytest.raises(UnknownName, match=r"unknown style 'oil'; known: anime, illustration, photoreal, watercolor"):
        registry.style("oil")
    with pytest.raises(UnknownName, match="unknown model 'sd15'"):
        registry.model("sd15")
    with pytest.raises(UnknownName, match="unknown LoRA 'nope'"):
        registry.lora("nope")


def _broken(documents, file, change):
    change(documents[file])
    with pytest.raises(RegistryError) as caught:
        Registry.from_documents(**documents)
    return str(caught.value)


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        ("models", lambda d: d["models"][0].pop("checkpoint"),
         "models.json: entry 0 ('qwen-image-edit'): checkpoint: Field required"),
        ("models", lambda d: d["models"][1].update(steps=0),
         "models.json: entry 1 ('flux-kontext-dev'): steps: Input should be greater than or equal to 1"),
        ("models", lambda d: d["models"][0].update(width=1001),
         "models.json: entry 0 ('qwen-image-edit'): width: Input should be a multiple of 8"),
        ("models", lambda d: d["models"][0].update(kind="video"),
         "models.json: entry 0 ('qwen-image-edit'): kind: Input should be 'edit' or 't2i'"),
        ("models", lambda d: d["models"].append(dict(d["models"][0])),
         "models.json: entry 4 ('qwen-image-edit'): duplicate name 'qwen-image-edit'"),
        ("models", lambda d: d["models"][0].update(colour="red"),
         "models.json: entry 0 ('qwen-image-edit'): colour: Extra inputs are not permitted"),
        ("models", lambda d: d.pop("models"), "models.json: expected an object with a list under 'models'"),
        ("loras", lambda d: d["loras"][2].update(rating="adult"),
         "loras.json: entry 2 ('mira-v1'): rating: Input should be 'sfw', 'suggestive' or 'nsfw'"),
        ("loras", lambda d: d["loras"][0].update(purpose="colour"), "loras.json: entry 0 ('anime-lines'): purpose:"),
        ("loras", lambda d: d["loras"][0].update(file="anime.ckpt"), "loras.json: entry 0 ('anime-lines'): file:"),
        ("loras", lambda d: d["loras"][0].update(trigger_words=["  "]),
         "loras.json: entry 0 ('anime-lines'): trigger_words: Value error, must not contain blank words"),
        ("loras", lambda d: d["loras"][0].update(models=["sd15"]),
         "loras.json: LoRA 'anime-lines': models ['sd15'] are not in models.json"),
        ("styles", lambda d: d["styles"][0].update(model="sd15"),
         "styles.json: style 'photoreal': model 'sd15' is not in models.json"),
        ("styles", lambda d: d["styles"][0].update(model="sdxl-base"),
         "styles.json: style 'photoreal': model 'sdxl-base' is t2i, a chain needs an edit model"),
        ("styles", lambda d: d["styles"][0].update(lora="mira-v1"),
         "styles.json: style 'photoreal': LoRA 'mira-v1' has purpose 'character', expected 'style'"),
        ("styles", lambda d: d["styles"][0].update(lora="missing"),
         "styles.json: style 'photoreal': LoRA 'missing' is not in loras.json"),
        ("styles", lambda d: d["styles"][2].update(lora="anime-lines"),
         "styles.json: style 'illustration': LoRA 'anime-lines' is not made for model 'flux-kontext-dev'"),
        ("styles", lambda d: d.update(default="oil"), "styles.json: 'default' must name one of the styles, got 'oil'"),
        ("content_words", lambda d: d.update(violent=["gore"]),
         "content_words.json: unknown rating(s) ['violent']; use ['suggestive', 'nsfw']"),
        ("content_words", lambda d: d["nsfw"].append("lingerie"),
         "content_words.json: words under two ratings: ['lingerie']"),
    ],
)
def test_invalid_entries_name_the_file_and_entry(documents, file, change, message):
    assert _broken(documents, file, change).startswith(message)


def test_a_missing_file_and_a_file_that_is_not_json(tmp_path):
    for name, document in shipped_documents().items():
        (tmp_path / f"{name}.json").write_text(json.dumps(document))
    assert Registry.load(tmp_path).default_style == "photoreal"
    (tmp_path / "styles.json").write_text('{"styles": [,]}')
    with pytest.raises(RegistryError, match=r"styles.json: not valid JSON at line 1 column 13"):
        Registry.load(tmp_path)
    (tmp_path / "styles.json").unlink()
    with pytest.raises(RegistryError, match=r"styles.json: file not found"):
        Registry.load(tmp_path)
