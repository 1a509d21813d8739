"""Runs one simulation: a pure function from resolved input to canonical result bytes.

It is a top-level function of picklable arguments, so the scheduler may run it inline, in a
thread or in a worker process; the bytes are the same wherever it runs.
"""

from random import Random
from typing import Any

from novel_engine.content.canonical import canonical_json
from novel_engine.simulation.actions import Action
from novel_engine.simulation.chronicler import write_story
from novel_engine.simulation.director import end_turn, fire_events, resolve
from novel_engine.simulation.records import TurnRecord
from novel_engine.simulation.request import MODEL_VERSION, SimulationInput
from novel_engine.simulation.utility import choose_action
from novel_engine.simulation.world import World


def _seeded(simulation_id: str, stream: int) -> Random:
    """Independent generators from the id's bits: 0 for rules, 1 for prose."""
    return Random(int(simulation_id[stream * 32 : (stream + 1) * 32], 16))


def play(simulation: SimulationInput, rng: Random) -> tuple[World, list[TurnRecord]]:
    """Run the turns; the story stops early once fewer than two agents remain."""
    world = World.create(simulation)
    events = simulation.campaign.events if simulation.campaign else ()
    order = world.initiative_order()
    log: list[TurnRecord] = []
    for turn in range(1, simulation.turns + 1):
        world.turn = turn
        fired = fire_events(world, events, rng)
        actions = [
            resolve(world, agent, choose_action(agent, world, rng), rng)
            for agent in order
            # An agent defeated or gone earlier in this turn does not act.
            if agent.active
        ]
        end_turn(world)
        log.append({"turn": turn, "tension": world.tension, "events": fired, "actions": actions})
        if len(world.active_agents()) < 2:
            break
    return world, log


def _participant_stats(world: World) -> list[dict[str, Any]]:
    return [
        {
            "id": agent.id,
            "status": agent.status,
            "health": agent.health,
            "max_health": agent.max_health,
            "morale": agent.morale,
            "damage_dealt": agent.damage_dealt,
            "damage_taken": agent.damage_taken,
            "healing_done": agent.healing_done,
            "clues_found": agent.clues,
            "actions": {action: agent.actions[action] for action in Action},
        }
        for agent in world.agents.values()
    ]


def result_document(simulation: SimulationInput, simulation_id: str) -> dict[str, Any]:
    """The result as JSON data, shaped exactly like ``result.SimulationResult``."""
    world, log = play(simulation, _seeded(simulation_id, 0))
    story = write_story(world, log, simulation.turns, _seeded(simulation_id, 1))
    campaign = simulation.campaign
    return {
        "id": simulation_id,
        "status": "succeeded",
        "model_version": MODEL_VERSION,
        "request": {
            "character_ids": [c.id for c in simulation.characters],
            "campaign_id": campaign.id if campaign else None,
            "turns": simulation.turns,
            "seed": simulation.seed,
        },
        "campaign": (
            {"id": campaign.id, "title": campaign.title, "content_hash": campaign.content_hash()}
            if campaign
            else None
        ),
        "participants": [
            {
                "id": c.id,
                "name": c.name,
                "faction": c.faction,
                "archetype": c.archetype,
                "content_hash": c.content_hash(),
            }
            for c in simulation.characters
        ],
        "turns": log,
        "story": story,
        "stats": {
            "turns_requested": simulation.turns,
            "turns_played": len(log),
            "final_tension": world.tension,
            "clues_found": world.clues,
            "mystery_solved": world.revealed,
            "events_fired": world.events_fired,
            "participants": _participant_stats(world),
        },
    }


def run_simulation(simulation: SimulationInput) -> bytes:
    """The simulation's result as canonical JSON bytes."""
    return canonical_json(result_document(simulation, simulation.simulation_id()))
