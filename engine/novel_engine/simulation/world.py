"""The mutable state of one running simulation: the agents and the world around them."""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from novel_engine.content.models import (
    Archetype,
    Atmosphere,
    Campaign,
    Character,
    Item,
    ItemKind,
    Trait,
)
from novel_engine.simulation.actions import Action, temperament
from novel_engine.simulation.request import SimulationInput

SAME_FACTION_AFFINITY = 25
STARTING_TENSION = {
    Atmosphere.SERENE: 15,
    Atmosphere.HOPEFUL: 25,
    Atmosphere.MYSTERIOUS: 40,
    Atmosphere.GRIM: 55,
    Atmosphere.TENSE: 60,
    Atmosphere.CHAOTIC: 65,
}
# Without a campaign the cast meets on neutral ground.
DEFAULT_ATMOSPHERE = Atmosphere.MYSTERIOUS


class AgentStatus(StrEnum):
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"
    DEFEATED = "defeated"


def clamp(value: int, low: int = 0, high: int = 100) -> int:
    return max(low, min(high, value))


def _best_power(equipment: Sequence[Item], kind: ItemKind) -> int:
    return max((item.power for item in equipment if item.kind is kind), default=0)


@dataclass(slots=True)
class Agent:
    """One character taking part, with everything that changes while the story runs."""

    character: Character
    id: str
    max_health: int
    health: int
    morale: int
    affinity: dict[str, int]
    temperament: dict[Action, float]
    weapon: Item | None
    armour: int
    tool: int
    relic: int
    medicine: int
    status: AgentStatus = AgentStatus.ACTIVE
    guarding: bool = False
    insight: int = 0
    clues: int = 0
    last_attacker: str | None = None
    last_action: Action | None = None
    streak: int = 0  # how many times in a row last_action was taken
    damage_dealt: int = 0
    damage_taken: int = 0
    healing_done: int = 0
    actions: Counter[Action] = field(default_factory=Counter)

    @classmethod
    def create(cls, character: Character, cast: tuple[Character, ...]) -> "Agent":
        stats = character.stats
        max_health = 60 + stats.strength * 2 // 5 + stats.willpower // 5
        affinity = {
            other.id: SAME_FACTION_AFFINITY if other.faction == character.faction else 0
            for other in cast
            if other.id != character.id
        }
        for relationship in character.relationships:
            if relationship.target in affinity:
                affinity[relationship.target] = relationship.affinity
        weapons = [item for item in character.equipment if item.kind is ItemKind.WEAPON]
        return cls(
            character=character,
            id=character.id,
            max_health=max_health,
            health=max_health,
            morale=clamp(40 + stats.willpower // 4),
            affinity=affinity,
            temperament=temperament(character),
            weapon=max(weapons, key=lambda item: item.power, default=None),
            armour=_best_power(character.equipment, ItemKind.ARMOUR),
            tool=_best_power(character.equipment, ItemKind.TOOL),
            relic=_best_power(character.equipment, ItemKind.RELIC),
            medicine=_best_power(character.equipment, ItemKind.MEDICINE),
        )

    @property
    def name(self) -> str:
        return self.character.name

    @property
    def archetype(self) -> Archetype:
        return self.character.archetype

    @property
    def traits(self) -> Sequence[Trait]:
        return self.character.traits

    @property
    def active(self) -> bool:
        return self.status is AgentStatus.ACTIVE

    def health_percent(self) -> int:
        return self.health * 100 // self.max_health

    def wound(self, damage: int) -> int:
        """Apply damage; returns what was actually taken. Health 0 means defeat."""
        taken = min(damage, self.health)
        self.health -= taken
        self.damage_taken += taken
        if self.health == 0:
            self.status = AgentStatus.DEFEATED
        return taken

    def heal(self, amount: int) -> int:
        healed = min(amount, self.max_health - self.health)
        self.health += healed
        return healed


@dataclass(slots=True)
class World:
    """Shared state: the turn, the tension in the air and the mystery's progress."""

    agents: dict[str, Agent]
    campaign: Campaign | None
    tension: int
    clue_goal: int
    turn: int = 0
    clues: int = 0
    revealed: bool = False
    events_fired: int = 0

    @classmethod
    def create(cls, simulation: SimulationInput) -> "World":
        cast = simulation.characters
        atmosphere = simulation.campaign.atmosphere if simulation.campaign else DEFAULT_ATMOSPHERE
        return cls(
            agents={character.id: Agent.create(character, cast) for character in cast},
            campaign=simulation.campaign,
            tension=STARTING_TENSION[atmosphere],
            clue_goal=4 + len(cast),
        )

    @property
    def atmosphere(self) -> Atmosphere:
        return self.campaign.atmosphere if self.campaign else DEFAULT_ATMOSPHERE

    def initiative_order(self) -> list[Agent]:
        """Quickest first; ties by id, so the order never depends on anything else."""
        return sorted(self.agents.values(), key=lambda a: (-a.character.stats.agility, a.id))

    def active_agents(self) -> list[Agent]:
        return [agent for agent in self.agents.values() if agent.active]

    def raise_tension(self, amount: int) -> None:
        self.tension = clamp(self.tension + amount)

    def find_clue(self, agent: Agent) -> bool:
        """Record a clue; returns True when it completes the mystery."""
        agent.clues += 1
        self.clues += 1
        if not self.revealed and self.clues >= self.clue_goal:
            self.revealed = True
            return True
        return False
