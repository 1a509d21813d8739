"""Async job records in the shared L2 Redis, so that any replica answers for any job.

A job is a hash `<prefix>job:<id>` with its status, error, compressed input and priority, and,
while queued, the replica that runs it (`owner`) and the end of that replica's lease. Two sorted
sets index them: `<prefix>jobs:leases` (queued jobs by lease end) and `<prefix>jobs:expiry`
(every job by the end of its retention, counted from when it was accepted, its replica last
renewed its lease, or it ended: a job never expires while a replica runs it). Each
change is one Lua script, so two replicas never both claim a job, and times come from Redis'
clock, which every replica shares.

These keys carry no Redis TTL: under a `volatile-*` maxmemory policy Redis evicts only keys with
a TTL (the cache entries), never a job record. The engines delete records themselves when their
retention ends or their number passes the limit. Each replica also keeps a marker,
`<prefix>jobs:replica:<owner>`, which lives a retention period past its last renewal: when it is
gone, Redis has lost what the replica recorded (a restart without persistence), and the replica
records again the jobs that succeeded there.
"""

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from redis import exceptions as redis_errors
from redis.typing import EncodableT

from novel_engine.jobs import (
    Job,
    JobStatus,
    SharedJobsUnavailable,
    SucceededJob,
    decode_input,
    encode_input,
    job_record,
)
from novel_engine.redis_client import redis_client
from novel_engine.scheduler import Priority
from novel_engine.simulation.request import SimulationInput

T = TypeVar("T")
DEFAULT_PREFIX = "novel-engine:"
#: Records one prune deletes at most (it runs again a minute later at the latest).
PRUNE_BATCH = 1000

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS: job, leases, expiry.
# ARGV: id, status, input, priority, owner, lease ms, retention ms, only if absent (1 or 0).
# A queued job whose lease is still running is left alone (returns 0: another replica runs it),
# and so is any record when asked only if absent; anything else is replaced. Returns 1 when
# the record is now this replica's to run.
_PUT = (
    _NOW
    + """
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[2] == 'queued' and redis.call('HGET', KEYS[1], 'status') == 'queued'
    and tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0') > now then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'input', ARGV[3], 'priority', ARGV[4])
if ARGV[2] == 'queued' then
  local lease_until = now + tonumber(ARGV[6])
  redis.call('HSET', KEYS[1], 'owner', ARGV[5], 'lease_until', lease_until)
  redis.call('ZADD', KEYS[2], lease_until, ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[7]), ARGV[1])
return 1
"""
)

# KEYS: job, leases, expiry. ARGV: id, owner, status, error, retention ms.
# Any replica may record a success (the result is the same whoever computed it); only the
# owner may record a failure, so a replica whose lease lapsed cannot fail its successor's run.
_FINISH = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[3] ~= 'succeeded' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[3])
redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[1], 'error')
else
  redis.call('HSET', KEYS[1], 'error', ARGV[4])
end
if ARGV[3] ~= 'succeeded' then redis.call('HDEL', KEYS[1], 'input') end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[1])
return 1
"""
)

# KEYS: leases, expiry, then one job key per id. ARGV: owner, lease ms, retention ms, then the
# ids. Extends each lease and the record's retention. Returns the ids that have no record at all
# (Redis lost it: a restart without persistence).
_RENEW = (
    _NOW
    + """
local lease_until = now + tonumber(ARGV[2])
local kept_until = now + tonumber(ARGV[3])
local missing = {}
for i = 3, #KEYS do
  local fields = redis.call('HMGET', KEYS[i], 'status', 'owner')
  if fields[1] == 'queued' and fields[2] == ARGV[1] then
    redis.call('HSET', KEYS[i], 'lease_until', lease_until)
    redis.call('ZADD', KEYS[1], lease_until, ARGV[i + 1])
    redis.call('ZADD', KEYS[2], kept_until, ARGV[i + 1])
  elseif not fields[1] then
    table.insert(missing, ARGV[i + 1])
  end
end
return missing
"""
)

# KEYS: job, leases. ARGV: id, owner. Ends the owner's lease now: the next look takes it over.
_RELEASE = """
local fields = redis.call('HMGET', KEYS[1], 'status', 'owner')
if fields[1] ~= 'queued' or fields[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', 0)
redis.call('HDEL', KEYS[1], 'owner')
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""

# KEYS: job, leases, expiry. ARGV: id, owner. Deletes a job its owner could not accept after all.
_WITHDRAW = """
local fields = redis.call('HMGET', KEYS[1], 'status', 'owner')
if fields[1] ~= 'queued' or fields[2] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# KEYS: leases. ARGV: owner, lease ms, limit, job key prefix.
# Claims up to `limit` queued jobs whose lease has ended; returns input and priority of each.
_CLAIM = (
    _NOW
    + """
local lease_until = now + tonumber(ARGV[2])
local claimed = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[3])) do
  local key = ARGV[4] .. id
  local fields = redis.call('HMGET', key, 'status', 'input', 'priority')
  if fields[1] == 'queued' and fields[2] then
    redis.call('HSET', key, 'owner', ARGV[1], 'lease_until', lease_until)
    redis.call('ZADD', KEYS[1], lease_until, id)
    table.insert(claimed, fields[2])
    table.insert(claimed, fields[3])
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return claimed
"""
)

# KEYS: this replica's marker. ARGV: its lifetime in seconds. 1 when it was missing (set now):
# Redis has lost what this replica recorded there (it restarted empty, or was flushed), or this
# is the replica's first look; else 0, and its lifetime starts again.
_MARK = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 1 end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 0
"""

# KEYS: expiry, then one job key per job. ARGV: per job: id, input, expiry (epoch ms).
# Records succeeded jobs that have no record, with the expiry they had; returns how many.
_RESTORE = """
local restored = 0
for i = 2, #KEYS do
  local at = (i - 2) * 3 + 1
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'status', 'succeeded', 'input', ARGV[at + 1])
    redis.call('ZADD', KEYS[1], ARGV[at + 2], ARGV[at])
    restored = restored + 1
  end
end
return restored
"""

# KEYS: expiry, leases. ARGV: max records, batch, job key prefix.
# Deletes the records past their retention, a queued one too (no replica has renewed its lease
# for a retention period: none is left to run it), then the
# oldest finished records beyond max records (queued ones do not count and stay: the leases
# index holds exactly those); returns how many.
_PRUNE = (
    _NOW
    + """
local batch = tonumber(ARGV[2])
local function delete(id)
  redis.call('DEL', ARGV[3] .. id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
local deleted = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, batch)) do
  delete(id)
  deleted = deleted + 1
end
local surplus = redis.call('ZCARD', KEYS[1]) - redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[1])
local skipped = 0
while surplus > 0 and deleted < batch do
  local ids = redis.call('ZRANGE', KEYS[1], skipped, skipped + math.min(surplus, batch) - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    if redis.call('HGET', ARGV[3] .. id, 'status') == 'queued' then
      skipped = skipped + 1
    else
      delete(id)
      deleted = deleted + 1
      surplus = surplus - 1
    end
  end
end
return deleted
"""
)


class SharedJobStore:
    """Job records in Redis, with leases; every failure raises SharedJobsUnavailable."""

    def __init__(
        self,
        url: str,
        password: str | None = None,
        *,
        lease_seconds: float = 15.0,
        retention_seconds: float = 86_400.0,
        max_records: int = 10_000,
        key_prefix: str = DEFAULT_PREFIX,
        socket_timeout: float = 0.5,
    ) -> None:
        self.lease_seconds = lease_seconds
        self.owner = uuid.uuid4().hex  # this process: leases die with it
        self._lease_ms = max(1, int(lease_seconds * 1000))
        self._retention_ms = max(1, int(retention_seconds * 1000))
        self._max_records = max_records
        self._job_prefix = key_prefix + "job:"
        self._leases = key_prefix + "jobs:leases"
        self._expiry = key_prefix + "jobs:expiry"
        self._marker = f"{key_prefix}jobs:replica:{self.owner}"
        self._marker_seconds = max(1, int(retention_seconds))
        # No retry: a script whose answer was lost may have run (a claim would then be lost
        # until its lease runs out, rather than run twice).
        self._client = redis_client(url, password, socket_timeout=socket_timeout, retries=0)
        # EVALSHA, loading the script again if Redis lost it (a restart).
        self._put = self._client.register_script(_PUT)
        self._finish = self._client.register_script(_FINISH)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._withdraw = self._client.register_script(_WITHDRAW)
        self._claim = self._client.register_script(_CLAIM)
        self._prune = self._client.register_script(_PRUNE)
        self._mark = self._client.register_script(_MARK)
        self._restore = self._client.register_script(_RESTORE)

    def _job_keys(self, job_id: str) -> list[str]:
        return [self._job_prefix + job_id, self._leases, self._expiry]

    async def put(
        self,
        simulation: SimulationInput,
        priority: Priority,
        status: JobStatus,
        *,
        only_if_absent: bool = False,
    ) -> bool:
        """Record an accepted job. Queued: True when this replica now holds its lease, False
        when another replica runs it already. Succeeded: the record says so (True).
        ``only_if_absent``: leave any record there is alone (False)."""
        job_id = simulation.simulation_id()
        arguments: list[EncodableT] = [job_id, status, encode_input(simulation), priority.label]
        arguments += [self.owner, self._lease_ms, self._retention_ms, int(only_if_absent)]
        return bool(await self._call(lambda: self._put(self._job_keys(job_id), arguments)))

    async def finish(self, job_id: str, status: JobStatus, error: str | None = None) -> None:
        """Record how a job ended (a failure only while this replica holds the lease)."""
        arguments: list[EncodableT] = [job_id, self.owner, status, error or "", self._retention_ms]
        await self._call(lambda: self._finish(self._job_keys(job_id), arguments))

    async def renew(self, job_ids: Sequence[str]) -> list[str]:
        """Extend the leases this replica holds on these jobs, and their records' retention;
        returns the ids whose record Redis no longer has (for the caller to record again)."""
        keys = [self._leases, self._expiry, *(self._job_prefix + job_id for job_id in job_ids)]
        arguments: list[EncodableT] = [self.owner, self._lease_ms, self._retention_ms, *job_ids]
        missing = await self._call(lambda: self._renew(keys, arguments))
        return [_text(job_id) for job_id in missing]

    async def release(self, job_id: str) -> None:
        """End this replica's lease on a queued job it will not run: another one takes it."""
        keys = [self._job_prefix + job_id, self._leases]
        await self._call(lambda: self._release(keys, [job_id, self.owner]))

    async def withdraw(self, job_id: str) -> None:
        """Delete a queued job this replica holds but could not accept (its queue was full)."""
        await self._call(lambda: self._withdraw(self._job_keys(job_id), [job_id, self.owner]))

    async def claim_abandoned(self, limit: int) -> list[tuple[SimulationInput, Priority]]:
        """Take the lease of up to `limit` queued jobs whose lease has ended; their inputs."""
        arguments: list[EncodableT] = [self.owner, self._lease_ms, limit, self._job_prefix]
        reply = await self._call(lambda: self._claim([self._leases], arguments))
        return [
            (decode_input(reply[index]), Priority.parse(_text(reply[index + 1])))
            for index in range(0, len(reply), 2)
        ]

    async def prune(self) -> int:
        """Delete records past their retention, then the oldest finished ones beyond the
        limit."""
        arguments: list[EncodableT] = [self._max_records, PRUNE_BATCH, self._job_prefix]
        return int(await self._call(lambda: self._prune([self._expiry, self._leases], arguments)))

    async def lost_records(self) -> bool:
        """Whether Redis may have lost what this replica recorded there since the last look
        (it restarted empty, or was flushed); True at the first look."""
        return bool(await self._call(lambda: self._mark([self._marker], [self._marker_seconds])))

    async def restore(self, jobs: Sequence[SucceededJob]) -> int:
        """Record these succeeded jobs where Redis has no record of them, each expiring a
        retention after it ended; how many it had not."""
        keys = [self._expiry, *(self._job_prefix + job.id for job in jobs)]
        arguments: list[EncodableT] = []
        for job in jobs:
            expiry_ms = int(job.ended_at * 1000) + self._retention_ms
            arguments += [job.id, job.stored_input, expiry_ms]
        return int(await self._call(lambda: self._restore(keys, arguments)))

    async def ping(self) -> bool:
        """Whether Redis answers (raises SharedJobsUnavailable when it does not)."""
        return bool(await self._call(self._client.ping, idempotent=True))

    async def get(self, job_id: str) -> Job | None:
        fields = await self._call(
            lambda: self._client.hmget(self._job_prefix + job_id, "status", "error", "input"),
            idempotent=True,
        )
        status, error, stored_input = fields
        if status is None:
            return None
        return job_record(
            job_id, JobStatus(_text(status)), None if error is None else _text(error), stored_input
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, command: Callable[[], Awaitable[T]], *, idempotent: bool = False) -> T:
        """Run a command; any failure raises SharedJobsUnavailable. A lost connection drops
        the idle ones too: after a Redis restart they are all dead, and each would fail its
        next command. An idempotent command then gets one more try, on a new connection."""
        try:
            return await command()
        except redis_errors.ConnectionError as error:
            with contextlib.suppress(redis_errors.RedisError, OSError):  # (they are lost anyway)
                await self._client.connection_pool.disconnect(inuse_connections=False)
            if not idempotent:
                raise _unavailable(error) from error
        except (redis_errors.RedisError, OSError) as error:
            raise _unavailable(error) from error
        try:
            return await command()
        except (redis_errors.RedisError, OSError) as error:
            raise _unavailable(error) from error


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode()


def _unavailable(error: Exception) -> SharedJobsUnavailable:
    return SharedJobsUnavailable(str(error) or type(error).__name__)
