"""What the process pool's workers run besides their tasks. Kept apart from the scheduler
package, which workers would otherwise import (with prometheus_client and asyncio) to find it."""

import multiprocessing
import os
import threading
from multiprocessing.connection import wait


def end_with_parent() -> None:
    """Pool worker initializer: exit when the engine does, however it ends. A worker holds
    copies of its task pipe's write end and of the fork server's liveness pipe, so neither it
    nor the fork server would see the engine die (SIGKILL, OOM kill) and both would stay on."""
    engine = multiprocessing.parent_process()
    if engine is None:
        return

    def exit_when_gone() -> None:
        wait([engine.sentinel])
        os._exit(1)

    threading.Thread(target=exit_when_gone, name="end-with-engine", daemon=True).start()
