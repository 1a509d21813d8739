"""kopf wiring, and nothing else: each handler hands its event to the controller.

Only `on.event` handlers are used: kopf stores no progress or diff-base for them and adds no
finalizer, so watching never writes to any object, and a NovelEngine deleted while the
operator is down goes away at once (its children follow by garbage collection).
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import kopf
from kubernetes import client as k8s

from novel_operator import names
from novel_operator.builders import CHILD_KINDS
from novel_operator.controller import Controller
from novel_operator.kube.auth import connection_info

#: Children are watched by label, server-side: only the operator's own objects reach it.
MANAGED_SELECTOR = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
EventHandler = Callable[..., Awaitable[None]]
#: kopf's own annotations (none are written with on.event handlers alone) use our prefix.
KOPF_PREFIX = names.GROUP


class RetryForever:
    """kopf's delays between retries of a failed API request: 1 s, doubling up to 30 s, with no
    end. kopf gives up once its delays run out (its default ones add up to under a minute), and
    a watch that gives up ends the operator: an apiserver answering 5xx for a few minutes would
    put it in a crash loop instead of letting it carry on once the apiserver heals. kopf logs
    every failed attempt. Iterated afresh for every request."""

    def __iter__(self) -> Iterator[float]:
        delay = 1.0
        while True:
            yield delay
            delay = min(delay * 2, 30.0)


def operator_settings(*, watch_timeout: int) -> kopf.OperatorSettings:
    """kopf settings: bounded watches, no peering, no scanning, bookkeeping under our prefix."""
    settings = kopf.OperatorSettings()
    # A watch request ends server-side after `watch_timeout` and client-side a bit later, so a
    # silently dropped connection is noticed instead of leaving the operator deaf. (Whole
    # seconds: the apiserver refuses a fractional timeoutSeconds.)
    settings.watching.server_timeout = watch_timeout
    settings.watching.client_timeout = watch_timeout + 30
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    settings.networking.error_backoffs = RetryForever()
    # The CRD is installed before the operator (chart, tests): no CRD/namespace observation,
    # which would need cluster-wide list/watch on both.
    settings.scanning.disabled = True
    settings.persistence.finalizer = f"{KOPF_PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    # Events are recorded by the reconcile itself, on real changes only.
    settings.posting.enabled = False
    # Server-side selectors (kopf puts them on its list and watch requests; the `labels=` filters
    # of its handlers are applied client-side, to objects already received). Referenced
    # ConfigMaps and Secrets are not children: kube.watch watches the labelled ones.
    for api_version, kind in CHILD_KINDS:
        settings.watching.label_selectors[api_version, kind] = MANAGED_SELECTOR
    return settings


def build_registry(
    controller: Controller, configuration: k8s.Configuration
) -> kopf.OperatorRegistry:
    """Handlers that feed `controller`, and a login that uses `configuration`'s credentials."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(id="login", registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        return await asyncio.to_thread(connection_info, configuration)

    @kopf.on.event(names.API_VERSION, names.PLURAL, id="novelengine-event", registry=registry)
    async def novelengine_event(type: str, body: kopf.Body, **_: Any) -> None:
        if body.metadata.namespace:
            controller.novelengine_seen(body, deleted=type == "DELETED")

    for api_version, kind in CHILD_KINDS:
        kopf.on.event(api_version, kind, id=f"{kind.lower()}-event", registry=registry)(
            _child_event(controller)
        )
    return registry


def _child_event(controller: Controller) -> EventHandler:
    async def child_event(type: str, body: kopf.Body, **_: Any) -> None:
        controller.child_seen(body, deleted=type == "DELETED")

    return child_event
