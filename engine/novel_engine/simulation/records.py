"""The turn log as plain typed dicts: built thousands of times per simulation, serialised as is.

They have exactly the shape of the documented models in ``result`` (the tests hold every output
to those models); plain dicts skip per-record validation on the hot path.
"""

from typing import TypedDict

from novel_engine.content.models import EventEffect
from novel_engine.simulation.actions import Action, Outcome


class ActionRecord(TypedDict):
    actor: str
    action: Action
    target: str | None
    outcome: Outcome
    value: int  # damage dealt, health restored or clues found, depending on the action
    revelation: bool  # this action completed the mystery


class EventRecord(TypedDict):
    description: str
    effect: EventEffect


class TurnRecord(TypedDict):
    turn: int
    tension: int
    events: list[EventRecord]
    actions: list[ActionRecord]
