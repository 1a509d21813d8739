"""The narrative simulation: a rule-based, seeded, deterministic multi-agent model.

Agents choose actions by utility (``utility``), the director applies the rules (``director``),
the chronicler writes the story (``chronicler``); ``runner.run_simulation`` ties them together.
"""

from novel_engine.simulation.request import (
    MODEL_VERSION,
    SimulationInput,
    SimulationRequest,
)
from novel_engine.simulation.runner import run_simulation

__all__ = ["MODEL_VERSION", "SimulationInput", "SimulationRequest", "run_simulation"]
