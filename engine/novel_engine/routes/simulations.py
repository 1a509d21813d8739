"""Simulation routes: run one (sync or async) and fetch a result or a job's status."""

import re

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from novel_engine.content.canonical import canonical_json, entity_tag
from novel_engine.jobs import JobStatus
from novel_engine.keys import JOBS, SIMULATIONS
from novel_engine.problems import ProblemError
from novel_engine.routes import Operation, Reply, json_bytes
from novel_engine.routes.body import parse_body
from novel_engine.routes.conditional import (
    is_conditional,
    not_modified,
    preconditions,
    unrepresented_preconditions,
)
from novel_engine.scheduler import Priority
from novel_engine.simulation.request import SIMULATION_ID_PATTERN, RunMode, SimulationRequest
from novel_engine.simulation.result import SimulationResult

SIMULATIONS_PATH = "/v1/simulations"
GET_SIMULATION = "get_simulation"  # the operation id POST's replies link to
_SIMULATION_ID = re.compile(SIMULATION_ID_PATTERN)
# Without the shared L2 tier a result lives only in the replica that computed it.
NOT_FOUND_DETAIL = (
    "no simulation with this id is known to this engine: its record and result may be gone "
    "(kept for the job retention time, within the job record limit), or, without a shared "
    "cache (L2), another replica computed it. Submitting the same request again recomputes it "
    "under the same id"
)
SHARED_NOT_FOUND_DETAIL = (
    "no simulation with this id is known to this engine or to the shared job records (a record "
    "is kept for the job retention time). Submitting the same request again recomputes it "
    "under the same id"
)


class SimulationStatus(BaseModel):
    """Where an asynchronous simulation stands (a finished one answers with its result)."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: JobStatus
    status_url: str = Field(description="Poll this URL for the status or the result.")
    error: str | None = Field(None, description="Why a failed job failed.")


def status_url(simulation_id: str) -> str:
    return f"{SIMULATIONS_PATH}/{simulation_id}"


def _status(simulation_id: str, status: JobStatus, error: str | None = None) -> bytes:
    body = SimulationStatus(
        id=simulation_id, status=status, status_url=status_url(simulation_id), error=error
    )
    return canonical_json(body.model_dump(mode="json", exclude_none=True))


async def create_simulation(request: web.Request) -> web.Response:
    simulation_request = await parse_body(request, SimulationRequest)
    unrepresented_preconditions(request)
    simulations = request.app[SIMULATIONS]
    simulation = await simulations.prepare(simulation_request)
    priority = Priority.parse(simulation_request.priority)
    if simulation_request.mode is RunMode.SYNC:
        return json_bytes(await simulations.run(simulation, priority))
    simulation_id = simulation.simulation_id()
    status = await request.app[JOBS].start(simulation, priority, simulations.submit)
    return json_bytes(
        _status(simulation_id, status),
        status=202,
        headers={"Location": status_url(simulation_id)},
    )


def _tagged(request: web.Request, body: bytes) -> web.Response:
    # A result is the same bytes on every replica and never changes; a job status changes
    # as the job moves on. A tag of the bytes serves both.
    tag = entity_tag(body)
    if is_conditional(request) and preconditions(request, tag):
        return not_modified(tag)
    return json_bytes(body, headers={"ETag": tag})


async def get_simulation(request: web.Request) -> web.Response:
    simulation_id = request.match_info["id"]
    if not _SIMULATION_ID.fullmatch(simulation_id):
        raise ProblemError(404, "a simulation id is 64 lower-case hex digits", kind="not-found")
    simulations = request.app[SIMULATIONS]
    result = await simulations.cached(simulation_id)
    if result is not None:
        return _tagged(request, result)
    jobs = request.app[JOBS]
    job = await jobs.lookup(simulation_id)
    if job is None:
        detail = NOT_FOUND_DETAIL if jobs.shared is None else SHARED_NOT_FOUND_DETAIL
        raise ProblemError(404, detail, kind="not-found")
    if job.status is JobStatus.SUCCEEDED and job.input is not None:
        # The cache let the result go; the job kept its input, and the model is deterministic.
        return _tagged(request, await simulations.run(job.input, Priority.NORMAL))
    return _tagged(request, _status(simulation_id, job.status, job.error))


def simulation_operations() -> list[Operation]:
    return [
        Operation(
            "POST",
            SIMULATIONS_PATH,
            create_simulation,
            "create_simulation",
            "Run a simulation (sync: the result; async: 202 and a status URL)",
            "simulations",
            {
                200: Reply(
                    "The finished simulation (sync mode).",
                    (SimulationResult,),
                    links=(GET_SIMULATION,),
                ),
                202: Reply(
                    "Accepted (async mode); poll status_url.",
                    (SimulationStatus,),
                    links=(GET_SIMULATION,),
                ),
            },
            body=SimulationRequest,
            problems=(400, 404, 413, 422, 429, 503, 504, 507),
            untagged_preconditions={
                "If-Match": "Any value (`*` too) is a 412: `/v1/simulations` has no representation."
            },
        ),
        Operation(
            "GET",
            f"{SIMULATIONS_PATH}/{{id}}",
            get_simulation,
            GET_SIMULATION,
            "A simulation's result, or its job status while queued or after failing",
            "simulations",
            {200: Reply("The result or the job status.", (SimulationResult, SimulationStatus))},
            problems=(404, 429, 503, 504),
            conditional=True,
        ),
    ]
