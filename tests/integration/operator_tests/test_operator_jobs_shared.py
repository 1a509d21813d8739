"""JobsShared on the real control plane: a NovelEngine that runs several replicas without L2 says
that its async jobs stay per replica, and stops saying so once they are shared or it runs one."""

from __future__ import annotations

import pytest
from harness import Cluster, StartOperator, condition, wait_condition

from novel_operator import names

pytestmark = pytest.mark.integration


def test_jobs_shared_follows_replicas_and_the_l2_tier(
    cluster: Cluster, start_operator: StartOperator, testbed_namespace: str
) -> None:
    ns, name = testbed_namespace, "per-replica"
    start_operator("--namespace", ns)
    cluster.create_novelengine(ns, name, {"replicas": 2})

    per_replica = wait_condition(cluster, ns, name, names.CONDITION_JOBS_SHARED, "False")
    assert per_replica["reason"] == names.REASON_NO_SHARED_CACHE
    assert "cache.l2.mode" in per_replica["message"]

    cluster.patch_novelengine(ns, name, {"spec": {"cache": {"l2": {"mode": "managed"}}}})
    shared = wait_condition(cluster, ns, name, names.CONDITION_JOBS_SHARED, "True")
    assert shared["reason"] == names.REASON_SHARED_CACHE

    cluster.patch_novelengine(
        ns, name, {"spec": {"replicas": 1, "cache": {"l2": {"mode": "none"}}}}
    )

    def gone() -> str | None:
        found = condition(cluster.novelengine(ns, name) or {}, names.CONDITION_JOBS_SHARED)
        return None if found is None else str(found)

    cluster.wait("JobsShared gone with one replica", gone)
