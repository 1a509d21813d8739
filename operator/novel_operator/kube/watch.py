"""A watch of ConfigMaps or Secrets by a label selector, applied by the apiserver.

kopf opens one watch per resource kind, with one label selector (several are joined by "and"):
its watch of ConfigMaps and Secrets selects the operator's own children. The referenced ones a
user labels for watching need a second watch with a different selector, which this is. Only
objects matching the selector ever reach the operator, so its memory does not grow with the
unrelated ConfigMaps and Secrets of the cluster.

The kubernetes client is synchronous, so each watch runs on a thread of its own and hands the
names of changed objects to the event loop. It sends its requests with the client's ApiClient
(credentials, TLS, token refresh) but not through `CoreV1Api`, whose import alone costs about
20 MiB of resident memory. It lists, then watches from the list's
resourceVersion with bookmarks; each watch request ends server-side after `timeout_seconds` and
is resumed from the last resourceVersion seen; when that is too old (410 Gone) it lists again.
A watch that ends within a second of its answer with no event counts as a failure and is retried
after the back-off, as in client-go's reflector: something between the operator and the
apiserver ends it, and reopening it at once would flood the apiserver. So does an expiry before
any watch since the last list has had an event or run its course.
"""

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)

#: (namespace, name) of a watched object.
Key = tuple[str, str]
#: Called on the event loop with the namespace and name of an object that was added, changed or
#: deleted (or found by a list that followed a gap in the watch).
OnChange = Callable[[str, str], None]

_GONE = 410
#: The kinds this watches, and their resource names (core API group).
_RESOURCES = {"ConfigMap": "configmaps", "Secret": "secrets"}
#: Seconds between attempts after a failed request, doubling up to the maximum.
_BACKOFF_BASE, _BACKOFF_MAX = 1.0, 30.0
_CONNECT_TIMEOUT = 10.0
#: A watch that ends sooner than this with no event was ended by something other than its timeout.
_SHORTEST_WATCH = 1.0
#: Read timeout of the list (the watch's is its server-side timeout plus this margin).
_READ_TIMEOUT = 30.0


class LabelSelectorWatch:
    """Reports every change of the objects of `kind` ("ConfigMap" or "Secret") that match
    `label_selector`, in `namespace` (None: all namespaces)."""

    def __init__(
        self,
        configuration: k8s.Configuration,
        kind: str,
        namespace: str | None,
        label_selector: str,
        on_change: OnChange,
        *,
        timeout_seconds: int,
    ) -> None:
        self._api = k8s.ApiClient(configuration)
        resource = _RESOURCES[kind]
        scope = f"namespaces/{namespace}/" if namespace is not None else ""
        self._path = f"/api/v1/{scope}{resource}"
        self._description = f"{kind} in {namespace or 'all namespaces'} ({label_selector})"
        self._label_selector = label_selector
        self._on_change = on_change
        self._timeout_seconds = timeout_seconds
        self._stopping = threading.Event()
        self._response: Any = None  # the watch response being read, shut down to stop
        self._events = 0  # watch events read (on the thread)

    async def run(self) -> None:
        """Watch until cancelled."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def watch_on_thread() -> None:
            try:
                self._watch_until_stopped(loop)
            finally:
                self._api.close()  # type: ignore[no-untyped-call]  # the thread was its only user
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    loop.call_soon_threadsafe(_resolve, finished)

        thread = threading.Thread(
            target=watch_on_thread, name=f"watch {self._description}", daemon=True
        )
        thread.start()
        try:
            await asyncio.shield(finished)
        finally:
            self._stop()
            # The thread's blocking read ends as soon as its socket is shut down.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(finished), _CONNECT_TIMEOUT)

    def _stop(self) -> None:
        self._stopping.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(OSError):
                response.shutdown()

    # ------------------------------------------------------------------ on the thread

    def _watch_until_stopped(self, loop: asyncio.AbstractEventLoop) -> None:
        known: set[Key] = set()
        resource_version: str | None = None
        failures = 0
        # Whether, since the last list, a watch has had an event or run its course: an expiry
        # after that lists again at once, one before it waits like a failure.
        progressed = False
        while not self._stopping.is_set():
            events = self._events
            try:
                if resource_version is None:
                    resource_version, listed = self._list_all()
                    # After a gap, anything that came or went meanwhile is reported.
                    for key in known | listed:
                        self._report(loop, key)
                    known = listed
                    progressed = False
                resource_version, lasted = self._watch(loop, resource_version, known)
                if self._stopping.is_set():
                    return
                if self._events > events or lasted >= _SHORTEST_WATCH:
                    progressed = True
                    failures = 0
                    continue
                failures += 1
                log.warning("watch of %s ended at once with no events", self._description)
            except ApiException as error:
                progressed = progressed or self._events > events  # events, then the error
                if error.status == _GONE:
                    log.info("watch of %s expired; listing again", self._description)
                    resource_version = None
                    if progressed:
                        continue
                else:
                    log.warning("watch of %s failed: %s", self._description, _message(error))
                failures += 1
            except Exception as error:  # network trouble, or a stop mid-read
                if self._stopping.is_set():
                    return
                failures += 1
                log.warning("watch of %s failed: %r", self._description, error)
            self._stopping.wait(min(_BACKOFF_BASE * 2 ** (failures - 1), _BACKOFF_MAX))

    def _get(self, query: dict[str, str], read_timeout: float) -> Any:
        """GET the collection with `query` (and the label selector); the urllib3 response,
        not read yet. ApiException if the apiserver refuses."""
        request = self._api.param_serialize(
            method="GET",
            resource_path=self._path,
            query_params=[("labelSelector", self._label_selector), *query.items()],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request, _request_timeout=(_CONNECT_TIMEOUT, read_timeout))
        if not 200 <= response.status <= 299:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

    def _list_all(self) -> tuple[str, set[Key]]:
        response = self._get({}, _READ_TIMEOUT)
        self._response = response  # a stop shuts down a list being read too
        try:
            if self._stopping.is_set():  # stopped before the response was there to shut down
                raise _StoppedError
            body = json.loads(response.data)
        finally:
            self._response = None
            response.release_conn()
        keys = {_key(item) for item in body.get("items") or []}
        return str(body["metadata"]["resourceVersion"]), keys

    def _watch(
        self, loop: asyncio.AbstractEventLoop, resource_version: str, known: set[Key]
    ) -> tuple[str, float]:
        """One watch request from `resource_version`, until the server ends it; the last
        resourceVersion seen, and the seconds the watch was open once answered. Events are
        counted (bookmarks too, errors not) and reported, and `known` is kept up to date."""
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(self._timeout_seconds),
        }
        response = self._get(query, self._timeout_seconds + _READ_TIMEOUT)
        answered = time.monotonic()
        self._response = response
        try:
            if self._stopping.is_set():
                return resource_version, 0.0
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if not line:
                    continue
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                self._events += 1
                resource_version = str(obj["metadata"]["resourceVersion"])
                if event["type"] == "BOOKMARK":
                    continue
                key = _key(obj)
                if event["type"] == "DELETED":
                    known.discard(key)
                else:
                    known.add(key)
                self._report(loop, key)
        finally:
            self._response = None
            response.close()
            response.release_conn()
        return resource_version, time.monotonic() - answered

    def _report(self, loop: asyncio.AbstractEventLoop, key: Key) -> None:
        loop.call_soon_threadsafe(self._on_change, *key)


class _StoppedError(Exception):
    """The watch was stopped while a request was under way."""


def _message(error: ApiException) -> str:
    """The apiserver's own words (e.g. which permission is missing), else the HTTP status."""
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"


def _key(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return str(meta["namespace"]), str(meta["name"])


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
