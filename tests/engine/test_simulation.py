"""The simulation model: deterministic ids and bytes, a consistent log, character-driven play."""

import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from novel_engine.content.models import (
    Archetype,
    Campaign,
    Character,
    EventEffect,
    NarrativeEvent,
    Stats,
    Trait,
)
from novel_engine.simulation import MODEL_VERSION, SimulationInput, run_simulation
from novel_engine.simulation.request import SimulationRequest
from novel_engine.simulation.result import SimulationResult

from .samples import sample_campaigns, sample_characters, sample_input

SIEGE_CAST = ["ilse-varn", "seren-ashdown", "dagny-kross", "wren-aldane"]


def run(simulation: SimulationInput) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(run_simulation(simulation))
    return result


def character(character_id: str, **changes: Any) -> Character:
    return sample_characters()[character_id].model_copy(update=changes)


def test_same_input_gives_the_same_id_and_bytes() -> None:
    first = run_simulation(sample_input(SIEGE_CAST, "siege-of-emberfall", seed=3))
    second = run_simulation(sample_input(SIEGE_CAST, "siege-of-emberfall", seed=3))
    assert first == second
    assert (
        json.loads(first)["id"]
        == sample_input(SIEGE_CAST, "siege-of-emberfall", seed=3).simulation_id()
    )


def test_result_bytes_are_canonical_json() -> None:
    raw = run_simulation(sample_input(SIEGE_CAST, turns=3))
    assert (
        raw
        == json.dumps(
            json.loads(raw), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    )


def test_character_order_does_not_change_the_simulation() -> None:
    forwards = run_simulation(sample_input(SIEGE_CAST, "drowned-library", seed=9))
    backwards = run_simulation(sample_input(SIEGE_CAST[::-1], "drowned-library", seed=9))
    assert forwards == backwards


@pytest.mark.parametrize(
    "changed",
    [
        sample_input(SIEGE_CAST, "siege-of-emberfall", seed=4),
        sample_input(SIEGE_CAST, "siege-of-emberfall", seed=3, turns=21),
        sample_input(SIEGE_CAST, "drowned-library", seed=3),
        sample_input(SIEGE_CAST, None, seed=3),
        sample_input(SIEGE_CAST[:3], "siege-of-emberfall", seed=3),
    ],
    ids=["seed", "turns", "campaign", "no-campaign", "cast"],
)
def test_id_changes_with_anything_that_changes_the_result(changed: SimulationInput) -> None:
    assert (
        changed.simulation_id()
        != sample_input(SIEGE_CAST, "siege-of-emberfall", seed=3).simulation_id()
    )


def test_id_changes_when_a_character_is_edited_but_not_when_only_its_version_moves() -> None:
    base = sample_input(SIEGE_CAST, seed=1)
    edited_stats = Stats(strength=99)
    edited = base.model_copy(
        update={"characters": (character("dagny-kross", stats=edited_stats), *base.characters[1:])}
    )
    bumped = base.model_copy(
        update={"characters": (character("dagny-kross", version=7), *base.characters[1:])}
    )
    assert edited.simulation_id() != base.simulation_id()
    assert bumped.simulation_id() == base.simulation_id()


def test_priority_and_mode_are_not_part_of_the_request_identity() -> None:
    urgent = SimulationRequest.model_validate_json(
        '{"character_ids": ["a-1", "b-2"], "priority": "critical", "mode": "async"}'
    )
    relaxed = SimulationRequest.model_validate_json('{"character_ids": ["a-1", "b-2"]}')
    identity = {"character_ids", "campaign_id", "turns", "seed"}
    assert urgent.model_dump(include=identity) == relaxed.model_dump(include=identity)


def test_result_matches_its_schema_and_its_own_log() -> None:
    raw = run_simulation(sample_input(SIEGE_CAST, "siege-of-emberfall", turns=30, seed=5))
    result = SimulationResult.model_validate_json(raw)
    assert result.model_version == MODEL_VERSION
    assert [p.id for p in result.participants] == sorted(SIEGE_CAST)
    assert result.stats.turns_played == len(result.turns) <= 30
    assert [turn.turn for turn in result.turns] == list(range(1, len(result.turns) + 1))
    dealt: Counter[str] = Counter()
    taken: Counter[str] = Counter()
    counts: Counter[tuple[str, str]] = Counter()
    for turn in result.turns:
        for action in turn.actions:
            counts[action.actor, action.action] += 1
            if action.action == "attack" and action.target is not None:
                dealt[action.actor] += action.value
                taken[action.target] += action.value
    for stats in result.stats.participants:
        assert stats.damage_dealt == dealt[stats.id]
        assert stats.damage_taken >= taken[stats.id]  # perils hurt too
        assert 0 <= stats.health <= stats.max_health
        assert {str(k): v for k, v in stats.actions.items() if v} == {
            action: count for (actor, action), count in counts.items() if actor == stats.id
        }


def test_story_tells_the_log() -> None:
    result = run(sample_input(SIEGE_CAST, "siege-of-emberfall", turns=6, seed=2))
    story: str = result["story"]
    assert story.startswith("The Siege of Emberfall\n\n")
    for participant in result["participants"]:
        assert participant["name"] in story
    for turn in result["turns"]:
        assert f"Turn {turn['turn']}." in story
        for event in turn["events"]:
            assert event["description"] in story


def test_seeds_vary_the_story() -> None:
    stories = {
        run(sample_input(SIEGE_CAST, "siege-of-emberfall", seed=seed))["story"] for seed in range(5)
    }
    assert len(stories) == 5


def duel(aggressor: Character, victim: Character, turns: int) -> dict[str, Any]:
    return run(SimulationInput(characters=(aggressor, victim), campaign=None, turns=turns, seed=1))


def test_story_ends_early_when_fewer_than_two_remain() -> None:
    brute = character(
        "dagny-kross",
        stats=Stats(strength=100, agility=100),
        traits=[Trait.AGGRESSIVE, Trait.RECKLESS, Trait.ZEALOUS],
        relationships=[],
    )
    victim = character(
        "hesper-vale", stats=Stats(strength=0, agility=0, willpower=0), traits=[Trait.STOIC]
    )
    result = duel(brute, victim, turns=200)
    assert result["stats"]["turns_played"] < 200
    fates = {p["id"]: p["status"] for p in result["stats"]["participants"]}
    assert fates["hesper-vale"] in {"defeated", "withdrawn"}
    assert "too few remained" in result["story"]


def test_narrative_events_fire_by_probability() -> None:
    campaign = sample_campaigns()["drowned-library"].model_copy(
        update={
            "events": [
                NarrativeEvent(
                    trigger_turn=1,
                    probability=1.0,
                    description="The bells ring.",
                    effect=EventEffect.CALM,
                ),
                NarrativeEvent(
                    trigger_turn=1,
                    probability=0.0,
                    description="Nothing happens.",
                    effect=EventEffect.PERIL,
                ),
            ]
        }
    )
    simulation = SimulationInput(
        characters=tuple(sample_characters()[i] for i in SIEGE_CAST),
        campaign=campaign,
        turns=2,
        seed=0,
    )
    result = run(simulation)
    assert result["turns"][0]["events"] == [{"description": "The bells ring.", "effect": "calm"}]
    assert result["stats"]["events_fired"] == 1
    assert "Nothing happens." not in result["story"]


def action_share(result: dict[str, Any], actor: str, action: str) -> float:
    stats = next(p for p in result["stats"]["participants"] if p["id"] == actor)
    counts: dict[str, int] = stats["actions"]
    return counts[action] / sum(counts.values())


def test_temperament_drives_choices() -> None:
    """Over many seeds, the envoy talks far more than she fights and the brawler the reverse."""
    envoy_talks = brawler_fights = 0.0
    for seed in range(10):
        result = run(
            sample_input(
                ["wren-aldane", "dagny-kross", "hesper-vale"], "festival-of-lanterns", seed=seed
            )
        )
        envoy_talks += action_share(result, "wren-aldane", "communicate")
        envoy_talks -= action_share(result, "wren-aldane", "attack")
        brawler_fights += action_share(result, "dagny-kross", "attack")
        brawler_fights -= action_share(result, "dagny-kross", "communicate")
    assert envoy_talks / 10 > 0.4
    assert brawler_fights / 10 > 0.4


def test_scholars_solve_the_mystery_that_brawlers_ignore() -> None:
    scholars = run(
        sample_input(["hesper-vale", "oriel-thane", "tobin-reed"], "drowned-library", turns=40)
    )
    assert scholars["stats"]["mystery_solved"]
    assert "The truth they had sought was finally known." in scholars["story"]


def test_campaign_free_simulation_uses_a_neutral_setting() -> None:
    result = run(sample_input(["kael-dorran", "nyx-morrow"], turns=2))
    assert result["campaign"] is None
    assert result["story"].startswith("An Unwritten Tale\n\n")


def test_archetype_and_trait_vocabularies_are_disjoint() -> None:
    # The utility tables key biases by both; a shared value would apply twice.
    assert not {a.value for a in Archetype} & {t.value for t in Trait}


def test_bytes_are_identical_in_processes_with_different_hash_seeds() -> None:
    simulation = sample_input(SIEGE_CAST, "siege-of-emberfall", seed=11)
    script = (
        "import sys; from novel_engine.simulation import SimulationInput, run_simulation; "
        "sys.stdout.buffer.write(run_simulation(SimulationInput.model_validate_json(sys.stdin.read())))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            input=simulation.model_dump_json().encode(),
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            timeout=60,
        ).stdout
        for hash_seed in ("1", "2", "random")
    }
    assert outputs == {run_simulation(simulation)}


def test_campaign_documents_roundtrip_into_inputs() -> None:
    campaign = sample_campaigns()["siege-of-emberfall"]
    assert (
        Campaign.model_validate_json(campaign.model_dump_json()).content_hash()
        == campaign.content_hash()
    )


def test_a_simulation_worker_does_not_load_the_web_stack() -> None:
    # Each process-pool worker imports the model as it starts (the app's process_preload), and
    # keeps whatever that import pulls in for its whole life.
    script = (
        "import sys, novel_engine.pool_worker, novel_engine.simulation.runner; print(*sys.modules)"
    )
    modules = set(
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, check=True, text=True, timeout=60
        ).stdout.split()
    )
    assert "novel_engine.simulation.runner" in modules
    assert not {module for module in modules if module.partition(".")[0] == "aiohttp"}
