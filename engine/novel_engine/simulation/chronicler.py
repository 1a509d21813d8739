"""The chronicler: renders the structured turn log into story text.

Wording varies by a seeded generator of its own, so prose choices never disturb the
simulation's rolls and the same log always reads the same.
"""

from collections.abc import Mapping, Sequence
from random import Random

from novel_engine.content.models import Atmosphere, EventEffect
from novel_engine.simulation.actions import Action, Outcome
from novel_engine.simulation.records import ActionRecord, TurnRecord
from novel_engine.simulation.world import Agent, AgentStatus, World

UNTITLED = "An Unwritten Tale"
NEUTRAL_SETTING = "Strangers meet at a crossroads where no banner flies and no law holds."

MOOD: Mapping[Atmosphere, str] = {
    Atmosphere.SERENE: "The air was still, and for a while nobody hurried.",
    Atmosphere.HOPEFUL: "Something like hope moved through the crowd.",
    Atmosphere.MYSTERIOUS: "Nothing here was quite what it seemed.",
    Atmosphere.GRIM: "Every face was drawn and every word was weighed.",
    Atmosphere.TENSE: "Hands rested near weapons, and nobody turned their back.",
    Atmosphere.CHAOTIC: "Noise and smoke hid more than they showed.",
}
PLACES: Mapping[Atmosphere, tuple[str, ...]] = {
    Atmosphere.SERENE: ("the quiet gardens", "the old shrine", "the lakeshore"),
    Atmosphere.HOPEFUL: ("the market stalls", "the crowded bridge", "the guild hall"),
    Atmosphere.MYSTERIOUS: ("the flooded stacks", "a sealed alcove", "the ruined archive"),
    Atmosphere.GRIM: ("the charnel yard", "the empty barracks", "the burned chapel"),
    Atmosphere.TENSE: ("the watch towers", "the postern gate", "the granary cellars"),
    Atmosphere.CHAOTIC: ("the burning quarter", "the collapsed arcade", "the docks"),
}
EVENT_OPENERS: Mapping[EventEffect, str] = {
    EventEffect.OMEN: "An ill sign:",
    EventEffect.PERIL: "Disaster struck:",
    EventEffect.BOON: "Fortune smiled:",
    EventEffect.REVELATION: "A secret surfaced:",
    EventEffect.CALM: "A respite came:",
}
SENTENCES: Mapping[tuple[Action, Outcome], tuple[str, ...]] = {
    (Action.ATTACK, Outcome.HIT): (
        "{actor} struck {target} with {weapon}, wounding them ({value}).",
        "{actor} drove at {target} with {weapon} and drew blood ({value}).",
    ),
    (Action.ATTACK, Outcome.MISS): (
        "{actor} lunged at {target}, but {target} slipped aside.",
        "{actor} swung {weapon} at {target} and found only air.",
    ),
    (Action.ATTACK, Outcome.DEFEATED): (
        "{actor} brought {target} down with {weapon}; {target} did not rise again.",
        "{target} fell before {actor}'s assault.",
    ),
    (Action.COMMUNICATE, Outcome.SUCCESS): (
        "{actor} spoke quietly with {target}, and some of the distrust between them eased.",
        "{actor} won {target} over with patient words.",
    ),
    (Action.COMMUNICATE, Outcome.FAILURE): (
        "{actor} tried to reason with {target}, but the words fell flat.",
        "{target} turned away from {actor}'s overtures.",
    ),
    (Action.AID, Outcome.SUCCESS): (
        "{actor} tended {target}'s wounds.",
        "{actor} bound {target}'s injuries and steadied them.",
    ),
    (Action.INVESTIGATE, Outcome.SUCCESS): (
        "{actor} searched {place} and found a clue.",
        "In {place}, {actor} turned up something that did not belong.",
    ),
    (Action.INVESTIGATE, Outcome.FAILURE): (
        "{actor} searched {place} but found nothing.",
        "{actor} combed {place} without result.",
    ),
    (Action.OBSERVE, Outcome.NOTED): (
        "{actor} watched the others carefully.",
        "{actor} kept still and took everyone's measure.",
    ),
    (Action.GUARD, Outcome.SUCCESS): (
        "{actor} took a guarded stance.",
        "{actor} set their feet and waited for trouble.",
    ),
    (Action.RETREAT, Outcome.WITHDREW): (
        "{actor} withdrew from the scene.",
        "{actor} slipped away while they still could.",
    ),
    (Action.RETREAT, Outcome.REGROUPED): (
        "{actor} fell back to regroup.",
        "{actor} gave ground, gathering their strength.",
    ),
}
SELF_AID = ("{actor} paused to tend their own wounds.", "{actor} bound their own injuries.")
FATES: Mapping[AgentStatus, str] = {
    AgentStatus.ACTIVE: "{name} was still standing at the end ({health} of {max_health} health).",
    AgentStatus.WITHDRAWN: "{name} had left the story before its end.",
    AgentStatus.DEFEATED: "{name} lay defeated.",
}


def _join_names(names: Sequence[str]) -> str:
    if len(names) < 3:
        return " and ".join(names)
    return ", ".join(names[:-1]) + f", and {names[-1]}"


def _opening(world: World) -> list[str]:
    campaign = world.campaign
    cast = [
        f"{agent.name}, {agent.archetype} of the {agent.character.faction}"
        for agent in world.agents.values()
    ]
    setting = campaign.setting if campaign else NEUTRAL_SETTING
    return [
        campaign.title if campaign else UNTITLED,
        f"{setting} {MOOD[world.atmosphere]}",
        f"Gathered there: {_join_names(cast)}.",
    ]


def _sentence(record: ActionRecord, agents: Mapping[str, Agent], place: str, rng: Random) -> str:
    actor = agents[record["actor"]]
    own_wounds = record["action"] is Action.AID and record["target"] == record["actor"]
    templates = SELF_AID if own_wounds else SENTENCES[record["action"], record["outcome"]]
    text = rng.choice(templates).format(
        actor=actor.name,
        target=agents[target].name if (target := record["target"]) else "",
        weapon=f"their {actor.weapon.name}" if actor.weapon else "their bare hands",
        value=record["value"],
        place=place,
    )
    if record["revelation"]:
        text += " The pieces fell into place: the mystery was laid bare."
    return text


def _turn_paragraph(record: TurnRecord, world: World, rng: Random) -> str:
    places = PLACES[world.atmosphere]
    sentences = [f"Turn {record['turn']}."]
    sentences += [
        f"{EVENT_OPENERS[event['effect']]} {event['description']}" for event in record["events"]
    ]
    sentences += [
        _sentence(action, world.agents, rng.choice(places), rng) for action in record["actions"]
    ]
    return " ".join(sentences)


def _closing(world: World, turns_played: int, turns_requested: int) -> str:
    sentences = []
    if turns_played < turns_requested:
        sentences.append(f"After {turns_played} turns too few remained for the story to go on.")
    sentences += [
        FATES[agent.status].format(
            name=agent.name, health=agent.health, max_health=agent.max_health
        )
        for agent in world.agents.values()
    ]
    if world.revealed:
        sentences.append("The truth they had sought was finally known.")
    else:
        sentences.append(f"The mystery kept its secrets ({world.clues} clues found).")
    return " ".join(sentences)


def write_story(
    world: World, turns: Sequence[TurnRecord], turns_requested: int, rng: Random
) -> str:
    """The whole story: opening, one paragraph per turn, and everyone's fate."""
    paragraphs = _opening(world)
    paragraphs += [_turn_paragraph(record, world, rng) for record in turns]
    paragraphs.append(_closing(world, len(turns), turns_requested))
    return "\n\n".join(paragraphs)
