"""Fault injection for the engine's process pool, as a launcher script.

``python tests/engine/pool_faults.py ARGS`` runs the engine (``novel-engine ARGS``) with its
process-pool simulation replaced by ``write_half_a_result``: the pool worker writes the first
bytes of a result message to the pool's result pipe, creates the file named by the
HALF_WRITTEN_MARKER environment variable and then hangs. That is a worker killed in the middle
of writing its result, made deterministic: the parent's pool manager thread has read the
message header and waits for the rest, which never comes.
"""

import importlib
import os
import struct
import sys
import threading
from pathlib import Path

HALF_WRITTEN_MARKER = "NOVEL_ENGINE_TEST_HALF_WRITTEN_MARKER"


def write_half_a_result(simulation: object) -> bytes:
    """Runs in a pool worker, in place of run_simulation; never returns."""
    frame = sys._getframe(1)
    while frame.f_code.co_name != "_process_worker":  # concurrent.futures' worker loop
        assert frame.f_back is not None, "not running in a process pool worker"
        frame = frame.f_back
    result_pipe = frame.f_locals["result_queue"]._writer
    # multiprocessing's message framing: a 4-byte big-endian length, then the payload.
    os.write(result_pipe.fileno(), struct.pack("!i", 1 << 20) + b"half a result")
    Path(os.environ[HALF_WRITTEN_MARKER]).touch()
    threading.Event().wait()  # hang until the engine terminates this worker
    raise AssertionError("unreachable")


if __name__ == "__main__":
    from novel_engine.cli import main
    from novel_engine.simulation import service

    # The function under its module name, not __main__'s, so that it pickles as
    # pool_faults.write_half_a_result, which the pool workers import (they get this
    # directory on sys.path from the parent).
    faults = importlib.import_module("pool_faults")
    vars(service)["run_simulation"] = faults.write_half_a_result
    main(sys.argv[1:])
