"""Content library models: characters and campaigns, their bounds and their identities.

Every model forbids unknown fields and is strict about types; JSON input may still name enum
members by their string values. Content files are validated through the same JSON path.
What a model accepts is exactly what its JSON Schema (in the OpenAPI document) calls valid:
an integer may be written 3.0, text may not be blank, list items that must differ say so.
"""

import re
import unicodedata
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from pydantic_core import PydanticCustomError

from novel_engine.content.canonical import content_digest

# From this on, a number read as a float (written with a fraction or an exponent) may not be the
# integer that was written: 2**53 + 1 written "9007199254740993.0" arrives as 9007199254740992.0.
INEXACT_FLOAT_INTEGER = 2**53


def _integral(value: Any) -> Any:
    # JSON Schema's "integer" is any number without a fraction, 3.0 included.
    if not isinstance(value, float) or not value.is_integer():
        return value
    if abs(value) >= INEXACT_FLOAT_INTEGER:
        raise PydanticCustomError(
            "int_from_inexact_float",
            "Integer written with a fraction or an exponent is exact only below 2**53 in"
            " magnitude; write it without one",
        )
    return int(value)


INTEGRAL = BeforeValidator(_integral)  # after an int's constraints, so they stay in its schema

SLUG_MAX_LENGTH = 64
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
_SLUG = re.compile(SLUG_PATTERN)


def _slug(value: str) -> str:
    # fullmatch: Python's "$" also matches before a final newline, and "ab\n" is no slug.
    if _SLUG.fullmatch(value) is None:
        raise PydanticCustomError(
            "string_pattern_mismatch",
            "String should match pattern '{pattern}'",
            {"pattern": SLUG_PATTERN},
        )
    return value


Slug = Annotated[
    str,
    StringConstraints(max_length=SLUG_MAX_LENGTH),
    AfterValidator(_slug),
    Field(
        description="Lower-case letters, digits and inner hyphens, at most 64 characters.",
        json_schema_extra={"pattern": SLUG_PATTERN},
    ),
]
StatValue = Annotated[int, Field(ge=0, le=100), INTEGRAL]
# Spelled out rather than \s: the schema's regex dialects disagree on what else is white space.
_BLANKS = " \t\n\r"


# Text is stored without the blanks around it.
STRIP_BLANKS = AfterValidator(lambda text: text.strip(_BLANKS))


# C0 and C1 control characters but the blanks: text is for people, their terminals and logs.
_CONTROLS = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"


def _text(max_length: int, min_length: int = 1) -> StringConstraints:
    """``min_length``..``max_length`` characters, no control character but the blanks; a
    required text needs a character that is not blank."""
    # Leading blanks, then one character that is neither blank nor control: no two parts of
    # the pattern can match the same character, so it runs in linear time.
    required = f"^[{_BLANKS}]*[^{_CONTROLS}{_BLANKS}][^{_CONTROLS}]*$"
    return StringConstraints(
        min_length=min_length,
        max_length=max_length,
        pattern=required if min_length else f"^[^{_CONTROLS}]*$",
    )


def slugify(text: str) -> str:
    """Derive an id from a name: ``"Captain Ilse Varn"`` -> ``"captain-ilse-varn"``.

    An accented letter counts as its base letter, other non-ASCII characters are dropped; a name
    left without ASCII letters or digits gives a hash-based id, ``"x-<12 hex digits>"``.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    slug = slug[:SLUG_MAX_LENGTH].rstrip("-")
    return slug or "x-" + content_digest({"name": text})[:12]


def require_unique(values: Sequence[Any], what: str) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise PydanticCustomError(
                "duplicate", "duplicate {what}: {value}", {"what": what, "value": str(value)}
            )
        seen.add(value)


class StrictModel(BaseModel):
    # No string cache: request bodies and content files are small and repeat few strings, and
    # pydantic-core's cache is a fixed 256 KiB table held for the life of the process. Patterns
    # run on Python's re, loaded anyway: pydantic-core's own regex engine cost about 0.5 MiB of
    # idle RSS (its code and tables) for the one search that text fields need.
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, cache_strings="none", regex_engine="python-re"
    )


class Archetype(StrEnum):
    """A character's calling; it biases which actions the character prefers."""

    WARRIOR = "warrior"
    SCOUT = "scout"
    SCHOLAR = "scholar"
    DIPLOMAT = "diplomat"
    MYSTIC = "mystic"
    ROGUE = "rogue"
    LEADER = "leader"
    ENGINEER = "engineer"
    HEALER = "healer"


class Trait(StrEnum):
    """Personality traits; each one shifts the utility of some actions."""

    AGGRESSIVE = "aggressive"
    CAUTIOUS = "cautious"
    CURIOUS = "curious"
    LOYAL = "loyal"
    CUNNING = "cunning"
    HONOURABLE = "honourable"
    DIPLOMATIC = "diplomatic"
    RECKLESS = "reckless"
    STOIC = "stoic"
    ZEALOUS = "zealous"
    COMPASSIONATE = "compassionate"
    AMBITIOUS = "ambitious"


class ItemKind(StrEnum):
    WEAPON = "weapon"
    ARMOUR = "armour"
    TOOL = "tool"
    RELIC = "relic"
    MEDICINE = "medicine"


class Stats(StrictModel):
    """Abilities from 0 to 100; 50 is ordinary."""

    strength: StatValue = 50
    agility: StatValue = 50
    intellect: StatValue = 50
    willpower: StatValue = 50
    charisma: StatValue = 50
    perception: StatValue = 50


class Item(StrictModel):
    name: Annotated[str, _text(60), STRIP_BLANKS]
    kind: ItemKind
    power: Annotated[int, Field(ge=0, le=100), INTEGRAL] = 10


class Relationship(StrictModel):
    """How this character feels about another: -100 (hatred) .. 100 (devotion)."""

    target: Slug
    affinity: Annotated[int, Field(ge=-100, le=100), INTEGRAL]


class ContentSpec(StrictModel):
    """What every content document has in common: a label its id can be derived from."""

    label_field: ClassVar[str]

    def label(self) -> str:
        return str(getattr(self, self.label_field))

    def spec_dict(self) -> dict[str, Any]:
        """The document's own fields as JSON data, without id and version."""
        return self.model_dump(mode="json", exclude={"id", "version"})


class CharacterSpec(ContentSpec):
    label_field: ClassVar[str] = "name"

    name: Annotated[str, _text(80), STRIP_BLANKS]
    faction: Annotated[str, _text(60), STRIP_BLANKS]
    archetype: Archetype
    description: Annotated[str, _text(500, min_length=0), STRIP_BLANKS] = ""
    stats: Stats = Stats()
    traits: Annotated[
        list[Trait], Field(max_length=8, json_schema_extra={"uniqueItems": True})
    ] = []
    equipment: Annotated[list[Item], Field(max_length=10)] = []
    # JSON Schema cannot say "distinct targets": a target named twice takes its last affinity.
    relationships: Annotated[
        list[Relationship],
        Field(max_length=16, description="A target named twice takes its last affinity."),
    ] = []

    @field_validator("traits")
    @classmethod
    def _unique_traits(cls, traits: list[Trait]) -> list[Trait]:
        require_unique(traits, "trait")
        return traits


class Atmosphere(StrEnum):
    """The campaign's mood; it sets the starting tension."""

    SERENE = "serene"
    HOPEFUL = "hopeful"
    MYSTERIOUS = "mysterious"
    GRIM = "grim"
    TENSE = "tense"
    CHAOTIC = "chaotic"


class EventEffect(StrEnum):
    """What a narrative event does to the world when it fires."""

    OMEN = "omen"  # tension rises
    PERIL = "peril"  # everyone present is hurt
    BOON = "boon"  # everyone present recovers
    REVELATION = "revelation"  # clues come to light
    CALM = "calm"  # tension falls


class NarrativeEvent(StrictModel):
    trigger_turn: Annotated[int, Field(ge=1, le=200), INTEGRAL]
    probability: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    description: Annotated[str, _text(300), STRIP_BLANKS]
    effect: EventEffect = EventEffect.OMEN


class CampaignSpec(ContentSpec):
    label_field: ClassVar[str] = "title"

    title: Annotated[str, _text(120), STRIP_BLANKS]
    setting: Annotated[str, _text(1000), STRIP_BLANKS]
    atmosphere: Atmosphere = Atmosphere.MYSTERIOUS
    events: Annotated[list[NarrativeEvent], Field(max_length=50)] = []


def content_hash(document_id: str, fields: dict[str, Any]) -> str:
    """A document's identity for simulation ids: same content, same hash, on any replica.

    The version is left out: replicas loading the same files agree even if their histories
    differ.
    """
    return content_digest({**fields, "id": document_id})


class InputFields(ContentSpec):
    """Body of a create (and an entry of a content file): the id is optional."""

    id: Slug | None = Field(default=None, description="Derived from the name/title if omitted.")


class ReplacementFields(ContentSpec):
    """Body of a replace: the id is the URL's; the version guards against lost updates."""

    version: Annotated[int, Field(ge=1), INTEGRAL] | None = Field(
        default=None,
        description="The version being replaced (409 if it is no longer current); If-Match "
        "with the document's ETag does the same.",
    )


class StoredFields(ContentSpec):
    id: Slug
    version: Annotated[
        int,
        Field(
            ge=1,
            description="Starts at 1, grows by one per update; a document created again after"
            " a delete goes on from the version it had.",
        ),
        INTEGRAL,
    ]

    def content_hash(self) -> str:
        return content_hash(self.id, self.spec_dict())


class CharacterInput(InputFields, CharacterSpec):
    """Body of POST /v1/characters."""


class CharacterReplacement(ReplacementFields, CharacterSpec):
    """Body of PUT /v1/characters/{id}."""


class Character(StoredFields, CharacterSpec):
    """A character as the library serves it."""


class CampaignInput(InputFields, CampaignSpec):
    """Body of POST /v1/campaigns."""


class CampaignReplacement(ReplacementFields, CampaignSpec):
    """Body of PUT /v1/campaigns/{id}."""


class Campaign(StoredFields, CampaignSpec):
    """A campaign as the library serves it."""


class ContentFile(StrictModel):
    """A YAML or JSON content file: lists of characters and campaigns."""

    characters: list[CharacterInput] = []
    campaigns: list[CampaignInput] = []
