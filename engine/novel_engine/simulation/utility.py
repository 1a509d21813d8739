"""How an agent decides: a utility score for every possible action, highest (plus noise) wins.

Scores combine the agent's archetype and traits (fixed biases), its stats and equipment, its
feelings about the others and the world's tension. Candidates are scored in a fixed order and
the noise comes from the simulation's seeded generator, so a choice is reproducible.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from random import Random

from novel_engine.content.models import Trait
from novel_engine.simulation.actions import Action
from novel_engine.simulation.world import Agent, World

# Random spread added to each score: enough to vary stories, too little to override character.
NOISE = 8.0
# Utility lost per repetition of the same action in a row: people tire of doing one thing.
TEDIUM = 5.0


@dataclass(frozen=True, slots=True)
class Choice:
    action: Action
    target: Agent | None = None


# (action, target, utility); plain tuples because thousands are scored per simulation.
Candidate = tuple[Action, Agent | None, float]


def _threat(agent: Agent, others: list[Agent]) -> int:
    """How much the most hostile other agent hates this one."""
    return max((max(0, -other.affinity.get(agent.id, 0)) for other in others), default=0)


def _same_faction(agent: Agent, other: Agent) -> bool:
    return agent.character.faction == other.character.faction


def _attack_utility(agent: Agent, target: Agent, world: World) -> float:
    stats = agent.character.stats
    weapon_power = agent.weapon.power if agent.weapon else 0
    if _same_faction(agent, target):
        kinship = -25.0 if Trait.LOYAL in agent.traits else -15.0
    else:
        kinship = 3.0
    grudge = 12.0 if agent.last_attacker == target.id else 0.0
    return (
        agent.temperament[Action.ATTACK]
        + 0.15 * world.tension
        - 0.3 * agent.affinity.get(target.id, 0)
        + 0.08 * stats.strength
        + 0.08 * weapon_power
        + kinship
        + grudge
        - 14.0
    )


def _communicate_utility(agent: Agent, target: Agent, world: World) -> float:
    # Peacemakers seek out the people who dislike them most.
    hostility = max(0, -target.affinity.get(agent.id, 0))
    return (
        agent.temperament[Action.COMMUNICATE]
        + 0.2 * agent.character.stats.charisma
        + 0.1 * agent.affinity.get(target.id, 0)
        + 0.12 * (100 - world.tension)
        + (0.1 * hostility if Trait.DIPLOMATIC in agent.traits else 0.0)
        - 6.0
    )


def _aid_utility(agent: Agent, target: Agent) -> float | None:
    """Only the wounded are tended, and only by those who do not resent them."""
    wounded = 100 - target.health_percent()
    affinity = 100 if target is agent else agent.affinity.get(target.id, 0)
    if wounded < 25 or affinity < 0:
        return None
    bonus = agent.temperament[Action.AID] + 0.1 * agent.medicine
    return bonus + 0.5 * wounded + 0.15 * affinity - 10.0


def candidates(agent: Agent, world: World) -> Iterator[Candidate]:
    """Every action open to ``agent`` with its utility, in a fixed order."""
    stats = agent.character.stats
    temperament = agent.temperament
    others = [other for other in world.active_agents() if other is not agent]
    wounded = 100 - agent.health_percent()
    yield (
        Action.OBSERVE,
        None,
        temperament[Action.OBSERVE]
        + 10.0
        + 0.2 * stats.perception
        - 0.05 * world.tension
        - 4.0 * agent.insight,
    )
    mystery = 0.0 if world.revealed else 10.0 + 0.1 * max(agent.tool, agent.relic)
    yield (
        Action.INVESTIGATE,
        None,
        temperament[Action.INVESTIGATE] + mystery + 0.2 * stats.intellect + 2.0 * agent.insight,
    )
    yield (
        Action.GUARD,
        None,
        temperament[Action.GUARD] + 4.0 + 0.25 * wounded + 0.15 * _threat(agent, others),
    )
    yield (
        Action.RETREAT,
        None,
        temperament[Action.RETREAT]
        + 0.6 * max(0, wounded - 50)
        + 0.3 * max(0, 40 - agent.morale)
        - 12.0,
    )
    for other in others:
        yield Action.ATTACK, other, _attack_utility(agent, other, world)
        yield Action.COMMUNICATE, other, _communicate_utility(agent, other, world)
    for patient in [agent, *others]:
        utility = _aid_utility(agent, patient)
        if utility is not None:
            yield Action.AID, patient, utility


def choose_action(agent: Agent, world: World, rng: Random) -> Choice:
    """The candidate with the highest utility plus noise; the first one wins a tie."""
    best: Candidate | None = None
    best_score = float("-inf")
    tedium = TEDIUM * agent.streak
    for candidate in candidates(agent, world):
        action, _, utility = candidate
        score = utility + rng.random() * NOISE
        if action is agent.last_action:
            score -= tedium
        if score > best_score:
            best, best_score = candidate, score
    assert best is not None  # observe is always a candidate
    return Choice(best[0], best[1])
