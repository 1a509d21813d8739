"""The NovelEngine CustomResourceDefinition, generated from the pydantic models.

pydantic's JSON schema is not a Kubernetes structural schema, so it is rewritten here: `$ref`s are
inlined, optional `anyOf [X, null]` become plain (omittable) X, titles and `additionalProperties:
false` go (unknown fields are pruned, or refused by strict field validation), and descriptions
become single-line `kubectl explain` text.

`python -m novel_operator.crd > crds/novelengines.novelengine.io.yaml` writes the file; a test
keeps it in sync.
"""

import re
import sys
from typing import Any

import yaml

from novel_operator import names
from novel_operator.model import NovelEngineSpec, NovelEngineStatus

Schema = dict[str, Any]

_DROPPED_KEYS = frozenset({"title", "$defs"})
_NULL = {"type": "null"}


def _single_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _with_field_keys(model: Schema, field: Schema) -> Schema:
    """A field's schema whose type is a model: the field's own keys (default) win over the
    model's, and its description comes first, followed by the model's (its docstring, which
    says what the object does), unless the model's already begins with it."""
    merged = model | field
    own, more = field.get("description"), model.get("description")
    if own and more:
        merged["description"] = more if more.startswith(own.rstrip(".")) else f"{own} {more}"
    return merged


def _structural(node: Schema, defs: dict[str, Schema]) -> Schema:
    """One pydantic schema node as a structural schema node."""
    if "$ref" in node:
        target = _structural(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return _with_field_keys(
            target, _structural({k: v for k, v in node.items() if k != "$ref"}, defs)
        )
    if _NULL in node.get("anyOf", []):
        members = [member for member in node["anyOf"] if member != _NULL]
        if len(members) != 1:
            raise ValueError(f"unsupported union in the model: {node['anyOf']}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if rest.get("default", ...) is None:
            del rest["default"]  # unset is expressed by leaving the field out
        return _with_field_keys(_structural(members[0], defs), _structural(rest, defs))
    result: Schema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or (key == "additionalProperties" and value is False):
            continue
        if key == "description":
            result[key] = _single_line(value)
        elif key == "properties":
            result[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            result[key] = _structural(value, defs)
        else:
            result[key] = value
    return result


def model_schema(model: type[NovelEngineSpec] | type[NovelEngineStatus]) -> Schema:
    """The structural schema of a model, as the CRD carries it."""
    schema = model.model_json_schema(by_alias=True)
    return _structural(schema, schema.get("$defs", {}))


# The name becomes a Service name (DNS-1035 label) and a StatefulSet name; the apiserver allows
# a CRD to restrict metadata.name (and nothing else in metadata).
_METADATA = {
    "type": "object",
    "properties": {
        "name": {
            "type": "string",
            "maxLength": names.MAX_NAME_LENGTH,
            "pattern": names.NAME_PATTERN,
        }
    },
}


def _root_schema() -> Schema:
    spec = model_schema(NovelEngineSpec) | {"default": {}}
    return {
        "type": "object",
        "description": (
            "A NovelEngine runs the narrative-simulation engine: its workload, Service, cache "
            "tiers, autoscaling and disruption budget, managed by the novel-engine operator."
        ),
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "Versioned schema of this representation of an object.",
            },
            "kind": {"type": "string", "description": "REST resource this object represents."},
            "metadata": _METADATA,
            "spec": spec,
            "status": model_schema(NovelEngineStatus),
        },
    }


def _printer_columns() -> list[dict[str, Any]]:
    return [
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            "description": "Whether every desired engine replica is updated and ready.",
        },
        {
            "name": "Replicas",
            "type": "integer",
            "jsonPath": ".status.replicas",
            "description": "Engine pods that exist.",
        },
        {
            "name": "Desired",
            "type": "integer",
            "jsonPath": ".status.desiredReplicas",
            "description": "Replicas asked for by the spec or the autoscaler.",
        },
        {
            "name": "L2",
            "type": "string",
            "jsonPath": ".spec.cache.l2.mode",
            "description": "Shared cache tier mode.",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {
            "name": "Endpoint",
            "type": "string",
            "jsonPath": ".status.endpoint",
            "description": "In-cluster address of the engine Service.",
            "priority": 1,
        },
    ]


def generate_crd() -> dict[str, Any]:
    """The complete CustomResourceDefinition manifest."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": names.CRD_NAME},
        "spec": {
            "group": names.GROUP,
            "names": {
                "kind": names.KIND,
                "listKind": names.LIST_KIND,
                "plural": names.PLURAL,
                "singular": names.SINGULAR,
                "shortNames": [names.SHORT_NAME],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": names.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": _root_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": _printer_columns(),
                }
            ],
        },
    }


def render_crd() -> str:
    """The CRD as the YAML document kept in crds/."""
    header = "# Generated by `python -m novel_operator.crd` from the model; do not edit.\n"
    return header + yaml.safe_dump(generate_crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render_crd())
