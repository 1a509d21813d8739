"""The shape of a finished simulation, as served by the API and documented in OpenAPI."""

from typing import Literal

from pydantic import Field

from novel_engine.content.models import Archetype, EventEffect, StrictModel
from novel_engine.simulation.actions import Action, Outcome
from novel_engine.simulation.world import AgentStatus


class ResolvedRequest(StrictModel):
    """The parts of the request that determine the result (character ids in id order)."""

    character_ids: tuple[str, ...]
    campaign_id: str | None
    turns: int
    seed: int


class ContentRef(StrictModel):
    id: str
    content_hash: str = Field(description="sha256 of the document's content when it ran.")


class CampaignRef(ContentRef):
    title: str


class Participant(ContentRef):
    name: str
    faction: str
    archetype: Archetype


class EventLog(StrictModel):
    description: str
    effect: EventEffect


class ActionLog(StrictModel):
    actor: str
    action: Action
    target: str | None
    outcome: Outcome
    value: int = Field(description="Damage dealt, health restored or clues found.")
    revelation: bool = Field(description="This action completed the mystery.")


class TurnLog(StrictModel):
    turn: int
    tension: int = Field(description="World tension (0..100) at the end of the turn.")
    events: tuple[EventLog, ...]
    actions: tuple[ActionLog, ...]


class ParticipantStats(StrictModel):
    id: str
    status: AgentStatus
    health: int
    max_health: int
    morale: int
    damage_dealt: int
    damage_taken: int
    healing_done: int
    clues_found: int
    actions: dict[Action, int]


class SimulationStats(StrictModel):
    turns_requested: int
    turns_played: int
    final_tension: int
    clues_found: int
    mystery_solved: bool
    events_fired: int
    participants: tuple[ParticipantStats, ...]


class SimulationResult(StrictModel):
    """A finished simulation. Its bytes are canonical JSON: identical on every replica."""

    id: str = Field(description="sha256 of the content, turns, seed and model version.")
    status: Literal["succeeded"] = "succeeded"
    model_version: str
    request: ResolvedRequest
    campaign: CampaignRef | None
    participants: tuple[Participant, ...]
    turns: tuple[TurnLog, ...]
    story: str
    stats: SimulationStats
