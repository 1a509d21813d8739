"""The packaged sample library as stored documents, for tests that run the model directly."""

from functools import cache
from typing import TypeVar

from novel_engine.content.loader import sample_content
from novel_engine.content.models import Campaign, Character, InputFields, StoredFields
from novel_engine.simulation import SimulationInput

StoredT = TypeVar("StoredT", bound=StoredFields)


def stored(model: type[StoredT], document: InputFields) -> StoredT:
    """``document`` as the library would store it at version 1."""
    fields = {**document.spec_dict(), "id": document.id, "version": 1}
    return model.model_validate(fields, strict=False)


@cache
def sample_characters() -> dict[str, Character]:
    files = sample_content()
    return {str(doc.id): stored(Character, doc) for file in files for doc in file.characters}


@cache
def sample_campaigns() -> dict[str, Campaign]:
    files = sample_content()
    return {str(doc.id): stored(Campaign, doc) for file in files for doc in file.campaigns}


def sample_input(
    character_ids: list[str], campaign_id: str | None = None, *, turns: int = 20, seed: int = 0
) -> SimulationInput:
    characters = sample_characters()
    return SimulationInput(
        characters=tuple(characters[character_id] for character_id in character_ids),
        campaign=sample_campaigns()[campaign_id] if campaign_id else None,
        turns=turns,
        seed=seed,
    )
