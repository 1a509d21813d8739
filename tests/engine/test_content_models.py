"""Content documents: bounds, strictness, id derivation, content files and the sample library."""

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from novel_engine.content.loader import ContentFileError, directory_content, sample_content
from novel_engine.content.models import SLUG_PATTERN, CampaignInput, CharacterInput, slugify

from .samples import sample_campaigns, sample_characters

MINIMAL = '{"name": "Ada", "faction": "Guild", "archetype": "engineer"}'


def errors_of(body: str) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        CharacterInput.model_validate_json(body)
    return [
        (".".join(str(part) for part in error["loc"]), error["type"])
        for error in caught.value.errors()
    ]


def test_minimal_character_gets_ordinary_defaults() -> None:
    character = CharacterInput.model_validate_json(MINIMAL)
    assert character.stats.strength == 50
    assert character.traits == []
    assert character.id is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ('"stats": {"strength": 101}', ("stats.strength", "less_than_equal")),
        ('"stats": {"luck": 5}', ("stats.luck", "extra_forbidden")),
        ('"traits": ["stoic", "stoic"]', ("traits", "duplicate")),
        ('"traits": ["sleepy"]', ("traits.0", "enum")),
        ('"name": ""', ("name", "string_too_short")),
        ('"name": 7', ("name", "string_type")),
        ('"id": "Not A Slug"', ("id", "string_pattern_mismatch")),
        ('"id": "ada\\n"', ("id", "string_pattern_mismatch")),  # "$" ends the text, no newline
        ('"name": " \\t\\n"', ("name", "string_pattern_mismatch")),  # blank text
        ('"name": "a\\u0000b"', ("name", "string_pattern_mismatch")),  # a control character
        ('"name": "\\u0085"', ("name", "string_pattern_mismatch")),
        ('"description": "a\\u001bb"', ("description", "string_pattern_mismatch")),
        (
            '"equipment": [{"name": "axe", "kind": "weapon", "power": "9"}]',
            ("equipment.0.power", "int_type"),
        ),
        (
            '"relationships": [{"target": "x", "affinity": -101}]',
            ("relationships.0.affinity", "greater_than_equal"),
        ),
        ('"colour": "blue"', ("colour", "extra_forbidden")),
    ],
)
def test_invalid_fields_are_reported_by_path(change: str, expected: tuple[str, str]) -> None:
    assert expected in errors_of(MINIMAL[:-1] + ", " + change + "}")


def test_list_maxima_are_enforced() -> None:
    nine = ["aggressive", "cautious", "curious", "loyal", "cunning", "stoic", "zealous", "reckless"]
    nine.append("ambitious")
    traits = '"traits": [' + ",".join(f'"{trait}"' for trait in nine) + "]"
    assert ("traits", "too_long") in errors_of(MINIMAL[:-1] + ", " + traits + "}")


def test_whitespace_is_trimmed() -> None:
    character = CharacterInput.model_validate_json(MINIMAL.replace('"Ada"', '"  Ada  "'))
    assert character.name == "Ada"


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Captain Ilse Varn", "captain-ilse-varn"),
        ("Zoë  O'Neil!", "zoe-o-neil"),
        ("x" * 90, "x" * 64),
    ],
)
def test_ids_derive_from_names(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_a_name_without_letters_or_digits_gives_a_hashed_id() -> None:
    assert re.fullmatch(SLUG_PATTERN, slugify("!!!"))
    assert slugify("!!!") == slugify("!!!") != slugify("???")


def test_event_probability_is_bounded() -> None:
    with pytest.raises(ValidationError):
        CampaignInput.model_validate_json(
            '{"title": "T", "setting": "S",'
            ' "events": [{"trigger_turn": 1, "probability": 1.5, "description": "d"}]}'
        )


def test_sample_library_has_a_dozen_characters_and_a_few_campaigns() -> None:
    characters, campaigns = sample_characters(), sample_campaigns()
    assert len(characters) == 12
    assert len(campaigns) == 3
    assert len({c.faction for c in characters.values()}) >= 3
    for character in characters.values():
        for relationship in character.relationships:
            assert relationship.target in characters, (character.id, relationship.target)


def test_sample_files_are_packaged_with_the_engine() -> None:
    assert sum(len(content.characters) for content in sample_content()) == 12


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text, encoding="utf-8")


def test_directory_content_reads_yaml_and_json_in_name_order(tmp_path: Path) -> None:
    write(tmp_path, "b.json", '{"campaigns": [{"title": "Night Market", "setting": "Lanterns."}]}')
    write(tmp_path, "a.yaml", "characters:\n  - {name: Ada, faction: Guild, archetype: engineer}\n")
    write(tmp_path, "notes.txt", "ignored")
    files = directory_content([tmp_path])
    assert [len(f.characters) for f in files] == [1, 0]
    assert files[1].campaigns[0].title == "Night Market"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("characters: [{name: Ada, faction: Guild, archetype: pilot}]", "characters.0.archetype"),
        (
            "characters: [{name: Ada, faction: Guild, archetype: engineer, version: 2}]",
            "characters.0.version",
        ),
        ("people: []", "people"),
        ("characters: [unclosed", "not valid YAML/JSON"),
        # A body with a key given twice is refused by the API: so is a file.
        (
            '{"characters": [{"name": "A", "name": "B", "faction": "F", "archetype": "scout"}]}',
            "duplicate key 'name'",
        ),
        ("characters: []\ncharacters: []\n", "duplicate key 'characters'"),
    ],
)
def test_bad_content_files_name_the_file_and_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    write(tmp_path, "bad.yaml", text)
    with pytest.raises(ContentFileError, match=r"bad\.yaml") as caught:
        directory_content([tmp_path])
    assert message in str(caught.value)


def test_yaml_merge_keys_may_override_what_they_merge(tmp_path: Path) -> None:
    write(
        tmp_path,
        "merged.yaml",
        "characters:\n"
        "  - &scout {name: Ada Quill, faction: Guild, archetype: scout}\n"
        "  - {<<: *scout, name: Bram Holt}\n"
        "  - &named {<<: *scout, name: Cora Vell}\n"
        "  - {<<: *named, name: Dov Ash}\n",
    )
    [loaded] = directory_content([tmp_path])
    assert [c.name for c in loaded.characters] == ["Ada Quill", "Bram Holt", "Cora Vell", "Dov Ash"]
    assert {c.faction for c in loaded.characters} == {"Guild"}


def test_a_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes("characters: [{name: Zo\u00eb}]".encode("latin-1"))
    with pytest.raises(ContentFileError, match=r"latin1\.yaml: not UTF-8 text"):
        directory_content([tmp_path])


def test_a_yaml_error_is_one_line(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", "characters:\n  - {name: Ada\n  - oops: [\n")
    with pytest.raises(ContentFileError) as caught:
        directory_content([tmp_path])
    assert "\n" not in str(caught.value)


def test_a_document_defined_twice_names_both_places(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "characters: [{name: Ada Quill, faction: Guild, archetype: scout}]")
    write(
        tmp_path,
        "b.yaml",
        "campaigns: [{id: ada-quill, title: T, setting: S}]\n"  # another kind: no clash
        "characters: [{id: ada-quill, name: Ada, faction: Crown, archetype: healer}]\n",
    )
    with pytest.raises(ContentFileError) as caught:
        directory_content([tmp_path])
    assert str(caught.value) == (
        f"{tmp_path / 'b.yaml'}: characters.0: id 'ada-quill' is also defined at "
        f"{tmp_path / 'a.yaml'}: characters.0"
    )


def test_a_missing_content_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ContentFileError, match="not a directory"):
        directory_content([tmp_path / "absent"])


def test_strict_types_apply_to_files_too(tmp_path: Path) -> None:
    write(
        tmp_path,
        "c.yaml",
        "characters: [{name: Ada, faction: Guild, archetype: engineer, stats: {strength: '40'}}]",
    )
    with pytest.raises(ContentFileError, match=r"characters\.0\.stats\.strength"):
        directory_content([tmp_path])
