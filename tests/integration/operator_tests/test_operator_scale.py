"""Many NovelEngines at once on the real control plane: the operator's connections, which
requests a reconcile sends, and the watch events that carry pod readiness into the status."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness import OPERATOR_USER, Cluster, StartOperator, condition_status, wait_reconciles
from testbed import Testbed

from novel_operator import names

pytestmark = pytest.mark.integration

SIMULTANEOUS = 20


def test_twenty_novelengines_created_at_once_become_ready_on_pooled_connections(
    testbed: Testbed, cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns = testbed_namespace
    operator = start_operator("--namespace", ns)
    collection = f"/apis/{names.API_VERSION}/namespaces/{ns}/{names.PLURAL}"

    def create(index: int) -> int:
        body = {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": f"fleet-{index}", "namespace": ns},
            "spec": {"replicas": 1},
        }
        return testbed.request("POST", collection, body)[0]

    with ThreadPoolExecutor(SIMULTANEOUS) as pool:
        assert set(pool.map(create, range(SIMULTANEOUS))) == {201}
    for index in range(SIMULTANEOUS):
        cluster.wait_ready(ns, f"fleet-{index}", timeout=180)

    discarded = [
        record
        for record in operator.log_records()
        if "Connection pool is full" in str(record.get("message"))
    ]
    assert not discarded, f"the operator discarded connections: {discarded[:3]}"


def test_a_reconcile_reads_the_children_that_exist_and_asks_for_no_other(
    testbed: Testbed, cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns = testbed_namespace
    operator = start_operator("--namespace", ns)  # resyncs every 2 s
    cluster.create_novelengine(ns, "lean", {"replicas": 1})  # ConfigMap, Deployment, Service
    cluster.wait_ready(ns, "lean")

    mark = testbed.audit_mark()
    wait_reconciles(cluster, operator, 2)
    reads = testbed.audit_events(since=mark, user=OPERATOR_USER, verbs=("get",), namespace=ns)

    assert reads, "the operator read nothing"
    assert {event.resource for event in reads} == {
        names.PLURAL,
        "configmaps",
        "deployments",
        "services",
    }
    assert {event.code for event in reads} == {200}, [
        (event.resource, event.name) for event in reads if event.code != 200
    ]


def test_the_status_follows_a_pod_turning_unready_and_ready_again_without_a_resync(
    testbed: Testbed, cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns = testbed_namespace
    start_operator("--namespace", ns, resync_seconds=3600)  # only watch events reconcile
    cluster.create_novelengine(ns, "steady", {"replicas": 1})
    cluster.wait_ready(ns, "steady")
    selector = names.selector_string(names.engine_selector("steady"))
    [pod] = cluster.list("v1", "Pod", ns, selector)

    def set_pod_ready(ready: str) -> None:
        # What a kubelet reports when a readiness probe fails or passes again.
        status, out = testbed.request(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/status",
            {"status": {"conditions": [{"type": "Ready", "status": ready}]}},
            content_type="application/strategic-merge-patch+json",
        )
        assert status == 200, out

    def novelengine_ready(expected: str) -> Callable[[], str | None]:
        def check() -> str | None:
            obj = cluster.novelengine(ns, "steady")
            assert obj is not None
            found = condition_status(obj, names.CONDITION_READY)
            return None if found == expected else f"Ready={found}: {obj.get('status')}"

        return check

    set_pod_ready("False")
    cluster.wait("the NovelEngine not Ready", novelengine_ready("False"))
    set_pod_ready("True")
    cluster.wait("the NovelEngine Ready again", novelengine_ready("True"))
