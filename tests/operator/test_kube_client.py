"""The kube client against an apiserver that accepts connections and never answers."""

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry

from novel_operator.kube import client as kube_client
from novel_operator.metrics import OperatorMetrics


@pytest.fixture
def silent_apiserver() -> Iterator[str]:
    """The URL of a server that accepts connections, reads nothing and answers nothing."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        acceptor.join()
        for connection in held:
            connection.close()
        listener.close()


async def test_discovery_from_a_silent_apiserver_fails_instead_of_hanging(
    silent_apiserver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first call of a kind discovers it, under a lock every other discovery waits on.
    monkeypatch.setattr(kube_client, "REQUEST_TIMEOUT", (1.0, 1.0))
    configuration = k8s.Configuration()
    configuration.host = silent_apiserver
    kube = kube_client.KubeClient(
        configuration, OperatorMetrics(CollectorRegistry()), field_manager="test", threads=2
    )
    try:
        read = asyncio.ensure_future(kube.get("v1", "ConfigMap", "stories", "library"))
        done, _ = await asyncio.wait({read}, timeout=60)
        assert read in done, "discovery still waiting on the silent apiserver after 60 s"
        assert read.exception() is not None
    finally:
        await kube.close()
