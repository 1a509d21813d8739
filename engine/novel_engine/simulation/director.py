"""The director: adjudicates each chosen action and each narrative event against the rules.

Every roll uses the simulation's seeded generator, in the order actions are resolved.
"""

from collections.abc import Callable, Sequence
from random import Random

from novel_engine.content.models import EventEffect, NarrativeEvent, Trait
from novel_engine.simulation.actions import Action, Outcome
from novel_engine.simulation.records import ActionRecord, EventRecord
from novel_engine.simulation.utility import Choice
from novel_engine.simulation.world import Agent, AgentStatus, World, clamp


def _record(
    agent: Agent,
    action: Action,
    outcome: Outcome,
    target: Agent | None = None,
    value: int = 0,
    revelation: bool = False,
) -> ActionRecord:
    return {
        "actor": agent.id,
        "action": action,
        "target": target.id if target else None,
        "outcome": outcome,
        "value": value,
        "revelation": revelation,
    }


def _percent_roll(rng: Random, chance: float) -> bool:
    return rng.random() * 100 < max(5.0, min(95.0, chance))


def _attack(world: World, agent: Agent, target: Agent, rng: Random) -> ActionRecord:
    attacker, defender = agent.character.stats, target.character.stats
    chance = 55 + 0.3 * (attacker.agility - defender.agility) + 5 * agent.insight
    if target.guarding:
        chance -= 20
    agent.insight = 0
    world.raise_tension(3)
    target.affinity[agent.id] = clamp(target.affinity.get(agent.id, 0) - 20, -100, 100)
    agent.affinity[target.id] = clamp(agent.affinity[target.id] - 5, -100, 100)
    target.last_attacker = agent.id
    if not _percent_roll(rng, chance):
        return _record(agent, Action.ATTACK, Outcome.MISS, target)
    weapon_power = agent.weapon.power if agent.weapon else 0
    damage = 4 + attacker.strength // 10 + weapon_power // 8 + rng.randint(0, 4)
    damage -= target.armour // 15
    if target.guarding:
        damage //= 2
    taken = target.wound(max(1, damage))
    agent.damage_dealt += taken
    target.morale = clamp(target.morale - 5)
    # Friends of the victim remember who struck.
    for witness in world.active_agents():
        if witness is not agent and witness is not target and witness.affinity[target.id] > 30:
            witness.affinity[agent.id] = clamp(witness.affinity[agent.id] - 10, -100, 100)
    outcome = Outcome.DEFEATED if target.status is AgentStatus.DEFEATED else Outcome.HIT
    return _record(agent, Action.ATTACK, outcome, target, taken)


def _communicate(world: World, agent: Agent, target: Agent, rng: Random) -> ActionRecord:
    stats = agent.character.stats
    chance = 40 + 0.4 * stats.charisma + 0.1 * agent.relic - 0.2 * world.tension
    chance += 0.2 * target.affinity.get(agent.id, 0)
    if _percent_roll(rng, chance):
        target.affinity[agent.id] = clamp(target.affinity.get(agent.id, 0) + 10, -100, 100)
        agent.affinity[target.id] = clamp(agent.affinity[target.id] + 6, -100, 100)
        agent.morale = clamp(agent.morale + 5)
        target.morale = clamp(target.morale + 5)
        world.raise_tension(-5)
        return _record(agent, Action.COMMUNICATE, Outcome.SUCCESS, target)
    target.affinity[agent.id] = clamp(target.affinity.get(agent.id, 0) - 3, -100, 100)
    world.raise_tension(1)
    return _record(agent, Action.COMMUNICATE, Outcome.FAILURE, target)


def _aid(world: World, agent: Agent, target: Agent, rng: Random) -> ActionRecord:
    amount = 6 + agent.character.stats.willpower // 10 + agent.medicine // 10 + rng.randint(0, 3)
    healed = target.heal(amount)
    agent.healing_done += healed
    if target is not agent:
        target.affinity[agent.id] = clamp(target.affinity[agent.id] + 8, -100, 100)
    return _record(agent, Action.AID, Outcome.SUCCESS, target, healed)


def _investigate(world: World, agent: Agent, rng: Random) -> ActionRecord:
    stats = agent.character.stats
    chance = 25 + 0.4 * stats.intellect + 0.2 * stats.perception + 0.1 * agent.tool
    chance += 5 * agent.insight
    agent.insight = 0
    if world.revealed or not _percent_roll(rng, chance):
        return _record(agent, Action.INVESTIGATE, Outcome.FAILURE)
    revelation = world.find_clue(agent)
    if revelation:
        world.raise_tension(10)
        for other in world.active_agents():
            other.morale = clamp(other.morale + 5)
    return _record(agent, Action.INVESTIGATE, Outcome.SUCCESS, value=1, revelation=revelation)


def _retreat(world: World, agent: Agent) -> ActionRecord:
    if agent.health_percent() < 50 or agent.morale < 30:
        agent.status = AgentStatus.WITHDRAWN
        return _record(agent, Action.RETREAT, Outcome.WITHDREW)
    agent.guarding = True
    agent.morale = clamp(agent.morale + 5)
    return _record(agent, Action.RETREAT, Outcome.REGROUPED)


def _observe(agent: Agent) -> ActionRecord:
    agent.insight = min(agent.insight + 1, 3)
    return _record(agent, Action.OBSERVE, Outcome.NOTED, value=agent.insight)


def _guard(agent: Agent) -> ActionRecord:
    agent.guarding = True
    return _record(agent, Action.GUARD, Outcome.SUCCESS)


TargetedRule = Callable[[World, Agent, Agent, Random], ActionRecord]
TARGETED_RULES: dict[Action, TargetedRule] = {
    Action.ATTACK: _attack,
    Action.COMMUNICATE: _communicate,
    Action.AID: _aid,
}


def resolve(world: World, agent: Agent, choice: Choice, rng: Random) -> ActionRecord:
    """Carry out ``choice`` for ``agent`` and return the log line."""
    agent.guarding = False  # a stance lasts until the agent's next action
    agent.actions[choice.action] += 1
    agent.streak = agent.streak + 1 if agent.last_action is choice.action else 1
    agent.last_action = choice.action
    if choice.target is not None:
        return TARGETED_RULES[choice.action](world, agent, choice.target, rng)
    if choice.action is Action.INVESTIGATE:
        return _investigate(world, agent, rng)
    if choice.action is Action.RETREAT:
        return _retreat(world, agent)
    if choice.action is Action.GUARD:
        return _guard(agent)
    return _observe(agent)


def fire_events(world: World, events: Sequence[NarrativeEvent], rng: Random) -> list[EventRecord]:
    """Roll this turn's narrative events (in campaign order) and apply those that fire."""
    fired: list[EventRecord] = []
    for event in events:
        if event.trigger_turn != world.turn or rng.random() >= event.probability:
            continue
        world.events_fired += 1
        fired.append({"description": event.description, "effect": event.effect})
        _apply_effect(world, event.effect, rng)
    return fired


def _apply_effect(world: World, effect: EventEffect, rng: Random) -> None:
    if effect is EventEffect.OMEN:
        world.raise_tension(10)
    elif effect is EventEffect.CALM:
        world.raise_tension(-15)
    elif effect is EventEffect.REVELATION:
        world.clues += 2
        world.revealed = world.revealed or world.clues >= world.clue_goal
    else:
        for agent in world.active_agents():
            if effect is EventEffect.PERIL:
                agent.wound(max(1, 3 + rng.randint(0, 5) - agent.armour // 20))
            else:
                agent.heal(8)
                agent.morale = clamp(agent.morale + 10)


def end_turn(world: World) -> None:
    """Slow pressures: the badly hurt lose heart; high tension wears on all but the steadfast."""
    for agent in world.active_agents():
        if agent.health_percent() < 30:
            agent.morale = clamp(agent.morale - 3)
        steadfast = Trait.STOIC in agent.traits or agent.relic >= 50
        if world.tension > 70 and not steadfast:
            agent.morale = clamp(agent.morale - 2)
