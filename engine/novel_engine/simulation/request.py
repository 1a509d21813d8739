"""What a simulation is asked to do, and its content-hash identity.

``SimulationRequest`` is the API body; ``SimulationInput`` is the resolved, self-contained input
(content documents included) that the pure simulation function receives, possibly in another
process. The id depends only on the content, the turns, the seed and the model version.
"""

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, field_validator

from novel_engine.content.canonical import content_digest
from novel_engine.content.models import (
    INTEGRAL,
    Campaign,
    Character,
    Slug,
    StrictModel,
    require_unique,
)

# Bump whenever the model's rules or its output change: it is part of every simulation id.
MODEL_VERSION = "1"
MIN_CHARACTERS = 2
MAX_CHARACTERS = 8
MAX_TURNS = 200
SIMULATION_ID_PATTERN = r"^[0-9a-f]{64}$"


class RunMode(StrEnum):
    SYNC = "sync"
    ASYNC = "async"


class PriorityName(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


class SimulationRequest(StrictModel):
    """Body of POST /v1/simulations. ``priority`` and ``mode`` do not change the result or id."""

    # Content of the sample library, which a new engine seeds.
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "character_ids": ["ilse-varn", "seren-ashdown"],
                    "campaign_id": "siege-of-emberfall",
                    "turns": 20,
                    "seed": 7,
                }
            ]
        }
    )

    character_ids: Annotated[
        list[Slug],
        Field(
            min_length=MIN_CHARACTERS,
            max_length=MAX_CHARACTERS,
            json_schema_extra={"uniqueItems": True},
        ),
    ]
    campaign_id: Slug | None = None
    turns: Annotated[int, Field(ge=1, le=MAX_TURNS), INTEGRAL] = 20
    seed: Annotated[int, Field(ge=0, le=2**63 - 1), INTEGRAL] = 0
    priority: PriorityName = PriorityName.NORMAL
    mode: RunMode = RunMode.SYNC

    @field_validator("character_ids")
    @classmethod
    def _distinct(cls, ids: list[str]) -> list[str]:
        require_unique(ids, "character id")
        return ids


class SimulationInput(StrictModel):
    """A request with its content resolved; characters are kept in id order."""

    characters: tuple[Character, ...]
    campaign: Campaign | None
    turns: int
    seed: int

    @field_validator("characters")
    @classmethod
    def _in_id_order(cls, characters: tuple[Character, ...]) -> tuple[Character, ...]:
        return tuple(sorted(characters, key=lambda character: character.id))

    def simulation_id(self) -> str:
        """sha256 over content hashes, turns, seed and model version (never priority/mode)."""
        return content_digest(
            {
                "model_version": MODEL_VERSION,
                "characters": [[c.id, c.content_hash()] for c in self.characters],
                "campaign": (
                    [self.campaign.id, self.campaign.content_hash()] if self.campaign else None
                ),
                "turns": self.turns,
                "seed": self.seed,
            }
        )
