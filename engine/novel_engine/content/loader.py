"""Reads content files (the packaged samples and ``--content`` directories) into models.

These functions do blocking file I/O: call them through ``asyncio.to_thread``.
"""

import json
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from novel_engine.content.models import ContentFile
from novel_engine.content.store import document_id

CONTENT_SUFFIXES = (".yaml", ".yml", ".json")


class ContentFileError(Exception):
    """A content file is unreadable or invalid; the message names the file and the field."""


def field_path(loc: Iterable[int | str]) -> str:
    """Render a pydantic error location as a dotted path: ``("events", 3, "probability")``."""
    return ".".join(str(part) for part in loc)


_STRING_TAG = "tag:yaml.org,2002:str"


class UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (as the API refuses it in a
    body) instead of keeping the last value; for content and settings files. Checked on the
    composed nodes, before merge keys (`<<`) are resolved: a merged mapping may override what
    it merges."""

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:  # (the anchor's name)
        node = super().compose_mapping_node(anchor)
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STRING_TAG:
                if key_node.value in seen:
                    raise yaml.composer.ComposerError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return node


def parse_content(text: str, source: str) -> ContentFile:
    """Validate one file's text; YAML is a superset of JSON, so one parser reads both."""
    try:
        data: Any = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())  # the parser's message spans lines
        raise ContentFileError(f"{source}: not valid YAML/JSON: {reason}") from None
    try:
        # Through JSON so files follow exactly the rules API bodies follow.
        payload = json.dumps(data if data is not None else {})
    except TypeError as error:  # e.g. a YAML timestamp has no JSON form
        raise ContentFileError(f"{source}: {error}") from None
    try:
        return ContentFile.model_validate_json(payload)
    except ValidationError as error:
        first = error.errors()[0]
        where = field_path(first["loc"]) or "(document)"
        raise ContentFileError(f"{source}: {where}: {first['msg']}") from None


def sample_content() -> list[ContentFile]:
    """The sample library packaged with the engine."""
    samples = resources.files("novel_engine.content").joinpath("samples")
    return [
        parse_content(_read(entry, f"samples/{entry.name}"), f"samples/{entry.name}")
        for entry in sorted(samples.iterdir(), key=lambda entry: entry.name)
        if entry.name.endswith(CONTENT_SUFFIXES)
    ]


def _read(path: Path | Traversable, source: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ContentFileError(f"{source}: not UTF-8 text: {error}") from None


def _content_paths(directory: Path) -> Iterator[Path]:
    if not directory.is_dir():
        raise ContentFileError(f"{directory}: not a directory")
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in CONTENT_SUFFIXES:
            yield path


def directory_content(directories: Iterable[Path]) -> list[ContentFile]:
    """Every content file in the given directories, in a defined (sorted) order; a document
    defined twice (the same kind and id) is an error naming both places."""
    loaded = [
        (str(path), parse_content(_read(path, str(path)), str(path)))
        for directory in directories
        for path in _content_paths(directory)
    ]
    _refuse_duplicates(loaded)
    return [content for _, content in loaded]


def _refuse_duplicates(loaded: Sequence[tuple[str, ContentFile]]) -> None:
    # Otherwise the file read last would win, silently, by the accident of its name.
    first_defined: dict[tuple[str, str], str] = {}
    for source, content in loaded:
        for kind, documents in (
            ("characters", content.characters),
            ("campaigns", content.campaigns),
        ):
            for index, document in enumerate(documents):
                where = f"{source}: {kind}.{index}"
                defined = document_id(document)
                first = first_defined.setdefault((kind, defined), where)
                if first != where:
                    message = f"{where}: id {defined!r} is also defined at {first}"
                    raise ContentFileError(message)
