"""The actions agents can take, their outcomes, and each character's standing inclinations."""

from collections.abc import Mapping
from enum import StrEnum

from novel_engine.content.models import Archetype, Character, Trait


class Action(StrEnum):
    OBSERVE = "observe"
    INVESTIGATE = "investigate"
    GUARD = "guard"
    RETREAT = "retreat"
    ATTACK = "attack"
    COMMUNICATE = "communicate"
    AID = "aid"


class Outcome(StrEnum):
    HIT = "hit"
    MISS = "miss"
    DEFEATED = "defeated"
    SUCCESS = "success"
    FAILURE = "failure"
    WITHDREW = "withdrew"
    REGROUPED = "regrouped"
    NOTED = "noted"


# Fixed utility bonus (or malus) per action for an archetype or a trait.
BIAS: Mapping[Action, Mapping[Trait | Archetype, float]] = {
    Action.OBSERVE: {
        Trait.CAUTIOUS: 6,
        Trait.CURIOUS: 4,
        Trait.CUNNING: 4,
        Archetype.SCOUT: 8,
        Archetype.MYSTIC: 5,
    },
    Action.INVESTIGATE: {
        Trait.CURIOUS: 14,
        Trait.CUNNING: 3,
        Archetype.SCHOLAR: 14,
        Archetype.ENGINEER: 8,
        Archetype.MYSTIC: 6,
    },
    Action.GUARD: {
        Trait.CAUTIOUS: 10,
        Trait.STOIC: 6,
        Trait.LOYAL: 4,
        Archetype.WARRIOR: 4,
        Archetype.LEADER: 3,
    },
    Action.RETREAT: {
        Trait.CAUTIOUS: 10,
        Trait.STOIC: -10,
        Trait.ZEALOUS: -8,
        Trait.RECKLESS: -6,
        Trait.HONOURABLE: -4,
        Archetype.ROGUE: 6,
        Archetype.SCOUT: 4,
    },
    Action.ATTACK: {
        Trait.AGGRESSIVE: 16,
        Trait.RECKLESS: 8,
        Trait.ZEALOUS: 6,
        Trait.AMBITIOUS: 4,
        Trait.HONOURABLE: -4,
        Trait.COMPASSIONATE: -10,
        Trait.DIPLOMATIC: -12,
        Archetype.WARRIOR: 8,
        Archetype.ROGUE: 3,
    },
    Action.COMMUNICATE: {
        Trait.DIPLOMATIC: 16,
        Trait.COMPASSIONATE: 6,
        Trait.CUNNING: 3,
        Trait.HONOURABLE: 3,
        Trait.AMBITIOUS: 2,
        Archetype.DIPLOMAT: 14,
        Archetype.LEADER: 8,
        Archetype.MYSTIC: 2,
    },
    Action.AID: {
        Trait.COMPASSIONATE: 12,
        Trait.LOYAL: 6,
        Archetype.HEALER: 18,
        Archetype.LEADER: 3,
    },
}


def temperament(character: Character) -> dict[Action, float]:
    """The character's fixed bias towards each action: archetype plus traits."""
    return {
        action: table.get(character.archetype, 0.0)
        + sum(table.get(trait, 0.0) for trait in character.traits)
        for action, table in BIAS.items()
    }
