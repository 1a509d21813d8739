"""The engine Service."""

from novel_operator import names
from novel_operator.builders.common import Manifest, manifest
from novel_operator.model import NovelEngineSpec, Owner


def build_service(owner: Owner, spec: NovelEngineSpec) -> Manifest:
    """The Service clients use (always present)."""
    return manifest(
        "v1",
        "Service",
        owner,
        names.engine_name(owner.name),
        app=names.ENGINE_APP,
        component=names.COMPONENT_ENGINE,
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
