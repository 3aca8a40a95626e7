"""The built-in personas file: fifteen characters as the issue lists them, checked at load."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from services.chat.errors import PersonaDataError
from services.chat.personas import DATA_DIR, load_personas

EXPECTED = {
    "luna": ("Luna", "woman", "shy", "photographer"),
    "sofia": ("Sofia", "woman", "temptress", "model"),
    "aria": ("Aria", "woman", "gentle", "yoga instructor"),
    "kai": ("Kai", "woman", "chill", "bartender"),
    "elena": ("Elena", "woman", "mysterious", "dancer"),
    "jade": ("Jade", "woman", "bold", "DJ"),
    "mia": ("Mia", "woman", "bubbly", "student"),
    "nina": ("Nina", "woman", "sophisticated", "designer"),
    "lena": ("Lena", "woman", "energetic", "fitness trainer"),
    "zara": ("Zara", "woman", "creative", "musician"),
    "rosa": ("Rosa", "woman", "passionate", "chef"),
    "marco": ("Marco", "man", "confident", "artist"),
    "justin": ("Justin", "man", "confident", "personal trainer"),
    "ivy": ("Ivy", "man", "reserved", "librarian"),
    "cleo": ("Cleo", "man", "fiery", "dancer"),
}
PLANNER_STYLES = DATA_DIR.parent.parent / "planner" / "data" / "styles.json"


def styles() -> set[str]:
    return {style["name"] for style in json.loads(PLANNER_STYLES.read_text())["styles"]}


def test_the_fifteen_builtins_load_with_planner_styles() -> None:
    book = load_personas(styles=styles())
    found = {p.id: (p.name, p.gender, p.personality, p.occupation) for p in book.personas}
    assert found == EXPECTED
    for persona in book.personas:
        assert persona.name in persona.persona and len(persona.replies) >= 3
        created = persona.created()
        assert created.builtin and created.owner is None and created.art_style == persona.art_style


def write(tmp_path: Path, mutate) -> Path:
    raw = json.loads((DATA_DIR / "personas.json").read_text())
    mutate(raw)
    path = tmp_path / "personas.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda raw: raw["personas"].append(dict(raw["personas"][0])), "duplicate persona ids: luna"),
        (lambda raw: raw["personas"][0].update(art_style="oil-painting"), "unknown art_style 'oil-painting'"),
        (lambda raw: raw["personas"][1]["replies"].append("Hi {user}!"), "sofia line 5: unknown field(s) {user}"),
        (lambda raw: raw["shared"]["picture"].append("here {scene"), "shared picture line 3: not a template"),
        (lambda raw: raw["personas"][0].update(id="Luna!"), "personas.0.id"),
        (lambda raw: raw["personas"][0].pop("greeting"), "personas.0.greeting: Field required"),
    ],
    ids=["duplicate-id", "unknown-style", "unknown-field", "broken-template", "bad-id", "missing-greeting"],
)
def test_problems_stop_loading_and_say_where(tmp_path: Path, mutate, says: str) -> None:
    with pytest.raises(PersonaDataError, match=rf"personas.json: .*{re.escape(says)}"):
        load_personas(write(tmp_path, mutate), styles=styles())


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PersonaDataError, match="cannot read"):
        load_personas(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PersonaDataError, match="not JSON"):
        load_personas(tmp_path / "bad.json")
