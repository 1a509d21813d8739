"""The engine Service."""

from novel_operator import names
from novel_operator.builders.common import Manifest, engine_manifest
from novel_operator.model import NovelEngineSpec, Owner


def build_service(owner: Owner, spec: NovelEngineSpec) -> Manifest:
    """The Service clients use (always present)."""
    return engine_manifest(
        "v1",
        "Service",
        owner,
        annotations=spec.service.annotations,
        spec={
            "type": spec.service.type,
            "selector": names.engine_selector(owner.name),
            "ports": [
                {
                    "name": names.ENGINE_PORT_NAME,
                    "port": spec.service.port,
                    "targetPort": names.ENGINE_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    )
