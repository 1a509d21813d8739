"""The engine Service."""

from operator_samples import OWNER, spec_of

from novel_operator.builders.service import build_service


def test_the_service_reaches_the_engine_port_of_this_instance_only() -> None:
    service = build_service(OWNER, spec_of())

    assert service["metadata"]["name"] == "demo"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "novel-engine",
        "app.kubernetes.io/instance": "demo",
    }
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert "annotations" not in service["metadata"]


def test_type_port_and_annotations_come_from_the_spec() -> None:
    annotations = {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}
    service = build_service(
        OWNER,
        spec_of({"service": {"type": "LoadBalancer", "port": 80, "annotations": annotations}}),
    )

    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["metadata"]["annotations"] == annotations
