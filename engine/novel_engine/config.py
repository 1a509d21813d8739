"""Engine settings: one validated model fed by flags > env > YAML file > defaults."""

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from novel_engine.content.loader import UniqueKeyLoader

ENV_PREFIX = "NOVEL_ENGINE_"
# Ten years. Redis refuses a lifetime past the range of its millisecond clock, and a lifetime of
# more than years is a typo: capped, so that it stops the start rather than every Redis write.
MAX_LIFETIME_SECONDS = 10 * 365 * 86_400
CONFIG_ENV = ENV_PREFIX + "CONFIG"
# Kubernetes gives a pod variables for each Service of its namespace ("service links"): for a
# Service novel-engine or novel-engine-x, NOVEL_ENGINE[_X]_SERVICE_HOST, ..._PORT_80_TCP_ADDR...
_SERVICE_LINK = re.compile(
    r"(.+_)?(SERVICE_HOST|SERVICE_PORT(_.+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)"
)


@dataclass(frozen=True)
class Flag:
    """Annotated marker for a setting whose command-line flag is not `--<field-name>`."""

    name: str
    metavar: str


class Settings(BaseModel):
    """Everything the engine process can be told; immutable once loaded."""

    # Infinity and NaN are no durations: infinite delays never end, TTLs overflow.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    host: str = Field(
        "127.0.0.1",
        min_length=1,  # an empty host would listen on every interface
        description="Address to listen on.",
    )
    port: int = Field(8080, ge=1, le=65535, description="TCP port for the API, probes and metrics.")
    data_dir: Path = Field(
        Path(".data"), description="Directory for the SQLite database (content and L3 cache)."
    )
    content_dirs: Annotated[tuple[Path, ...], Flag("--content", "DIR")] = Field(
        (),
        description="Extra content directories (YAML/JSON) to load; repeat the flag for several. "
        "In the environment, separate directories with the path separator.",
    )
    read_only_content: bool = Field(
        False,
        description="Refuse content writes; the library is then the samples and the content "
        "files, rebuilt at every start (cluster mode: content comes from a ConfigMap).",
    )
    redis_url: str | None = Field(
        None, description="Redis URL of the shared L2 cache tier, e.g. redis://host:6379/0."
    )
    # A secret never becomes a flag (it would be visible in the process list): env or file only.
    redis_password: SecretStr | None = Field(None, description="Password for the L2 Redis tier.")
    # Both bounded: a delay too long to ever end would leave a stopping engine running (an hour
    # is already far past any pod's grace period).
    drain_timeout: float = Field(
        20.0,
        gt=0,
        le=3600,
        description="Seconds to finish in-flight work on shutdown; keep it below the pod's "
        "termination grace period (Kubernetes default 30 s).",
    )
    shutdown_delay: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="Seconds between SIGTERM and the drain, during which readiness answers 503 "
        "and requests are still served (so load balancers stop routing here first); a second "
        "signal or SIGINT skips it. The pod's grace period must cover it plus drain_timeout, "
        "plus 4 s in which the last requests answer or are cancelled, plus 5 s more with "
        "redis_url (the last try to record the jobs of a Redis outage).",
    )
    max_body_bytes: int = Field(1_048_576, ge=1, description="Largest accepted request body.")
    keep_alive_timeout: float = Field(
        75.0,
        gt=0,
        le=3600,
        description="Seconds a connection may wait for its next request, idle or with the "
        "request's line and headers still coming; then it closes (a client trickling headers "
        "holds no connection for long). Keep it above the idle timeout of proxies that pool "
        "connections to the engine (nginx and most load balancers: 60 s).",
    )
    body_timeout: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Seconds a request body may take to arrive whole, from its first read; then "
        "408 (a client trickling a body holds no request, nor the drain, for long).",
    )
    db_pool_size: int = Field(
        4, ge=1, description="Most SQLite connections open at once (more open as queries overlap)."
    )
    db_acquire_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for a free database connection before a 503."
    )
    l1_max_entries: int = Field(10_000, ge=1, description="Entries kept in the in-process cache.")
    l1_max_bytes: int | None = Field(
        None,
        ge=1,
        description="Byte budget of the in-process cache; unset: a tenth of the container "
        "memory limit, or 64 MiB without one.",
    )
    l1_ttl_seconds: float = Field(300.0, gt=0, description="Lifetime of an in-process cache entry.")
    l2_ttl_seconds: float = Field(
        86_400.0, gt=0, le=MAX_LIFETIME_SECONDS, description="Lifetime of a Redis cache entry."
    )
    l3_max_entries: int = Field(100_000, ge=1, description="Rows kept in the SQLite cache tier.")
    l3_max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1,
        description="Bytes the SQLite database may take on disk (file, free pages and WAL); "
        "the SQLite cache tier evicts its oldest entries to stay under it.",
    )
    l3_enabled: bool = Field(True, description="Keep computed results in the SQLite cache tier.")
    job_retention_seconds: float = Field(
        86_400.0,
        gt=0,
        le=MAX_LIFETIME_SECONDS,
        description="How long an async job's record (status, error, input) is kept after its "
        "last change, in SQLite and in the shared L2 tier (a queued job's while a replica runs "
        "it).",
    )
    job_max_records: int = Field(
        10_000,
        ge=1,
        description="Job records kept in SQLite (and in the shared L2 tier) before the oldest go.",
    )
    job_lease_seconds: float = Field(
        15.0,
        gt=0,
        description="With L2: a job whose replica has not renewed its lease for this long is "
        "taken over and run by another replica.",
    )
    queue_limit: int = Field(
        256, ge=1, description="Queued scheduler tasks before new work is refused with 429."
    )
    scheduler_workers: int = Field(8, ge=1, description="Concurrent inline (async) tasks.")
    thread_workers: int = Field(4, ge=1, description="Threads for blocking tasks.")
    process_workers: int = Field(2, ge=1, description="Worker processes for CPU-heavy tasks.")
    process_cost_threshold: int = Field(
        # `python -m bench.bench_simulation`: from 80 agent-turns the pool is ahead of inline
        # runs and stalls the event loop least; threads compete with the loop for the GIL.
        40,
        ge=0,
        description="Estimated cost (agent-turns) above which a simulation runs in the process "
        "pool; between the inline limit (40) and this, it runs in a thread.",
    )
    task_deadline: float = Field(
        30.0, gt=0, description="Seconds a scheduled task may take, queueing included."
    )
    aging_seconds: float = Field(
        2.0, gt=0, description="Seconds of waiting that raise a queued task by one priority."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Logging threshold."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        from redis.asyncio import ConnectionPool  # redis is imported only with an L2 tier
        from redis.exceptions import RedisError

        # redis-py reads the URL at the first connection; a bad one must stop the start instead.
        # Its ValueError names the fault (port, option value, IPv6 host...); making a connection
        # object (no I/O) finds an option this kind of connection does not take.
        try:
            ConnectionPool.from_url(value).make_connection()  # type: ignore[no-untyped-call]
        except TypeError as error:  # "... got an unexpected keyword argument 'foo'"
            option = re.search(r"argument '(\w+)'", str(error))
            if option is None:  # a value of the wrong kind, say connection_class=x
                raise ValueError(f"an option of the URL cannot be used: {error}") from None
            raise ValueError(
                f"the URL's option {option[1]!r} is not one redis-py takes here"
            ) from None
        except RedisError as error:  # a value redis-py refuses, say protocol=4
            raise ValueError(f"an option of the URL cannot be used: {error}") from None
        database = urlsplit(value).path.strip("/")
        if value.startswith(("redis://", "rediss://")) and database and not database.isdigit():
            raise ValueError(f"the database in the path must be a number, not {database!r}")
        return value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir_named(cls, value: object) -> object:
        # Path("") is the working directory: an unset variable or a blank line must not put
        # the database wherever the engine happens to start.
        if isinstance(value, str) and not value.strip():
            raise ValueError('must name a directory (".": the working directory)')
        return value

    @field_validator("job_lease_seconds")
    @classmethod
    def _lease_within_retention(cls, value: float, info: ValidationInfo) -> float:
        # A record is kept a retention period past its last renewal; a replica that died stops
        # renewing, and its jobs must be taken over (a lease later) before they expire.
        retention = info.data.get("job_retention_seconds")
        shared = info.data.get("redis_url") is not None  # (leases exist only with L2)
        if shared and retention is not None and 2 * value > retention:
            raise ValueError(
                f"must be at most half of job_retention_seconds ({retention:g}), so that the"
                " jobs of a replica that died are taken over before their records expire"
            )
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_other_types(cls, value: object, info: ValidationInfo) -> object:
        # YAML reads `true` as a boolean, which pydantic would take for the number 1.
        if (
            isinstance(value, bool)
            and cls.model_fields[str(info.field_name)].annotation is not bool
        ):
            raise PydanticCustomError("bool_type", "a boolean is not a valid value here")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def redis_secret(self) -> str | None:
        """The L2 Redis password in clear, for a Redis client only (never logged)."""
        return None if self.redis_password is None else self.redis_password.get_secret_value()


class ConfigError(Exception):
    """Invalid configuration; the message is one line naming the setting and its source."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _flag(name: str, field: FieldInfo) -> Flag:
    for marker in field.metadata:
        if isinstance(marker, Flag):
            return marker
    return Flag("--" + name.replace("_", "-"), name.upper())


def _is_secret(field: FieldInfo) -> bool:
    return SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))


def _is_sequence(field: FieldInfo) -> bool:
    return get_origin(field.annotation) is tuple


def build_parser() -> argparse.ArgumentParser:
    """The `novel-engine` argument parser: one flag per setting, help from the descriptions."""
    secrets = [
        f"{ENV_PREFIX}{name.upper()}: {field.description}"
        for name, field in Settings.model_fields.items()
        if _is_secret(field)
    ]
    parser = _Parser(
        prog="novel-engine",
        description="Run the NovelEngine narrative-simulation service.",
        epilog="Secrets come only from the environment or the config file. " + " ".join(secrets),
        argument_default=argparse.SUPPRESS,  # only flags actually given override other sources
        allow_abbrev=False,
    )
    parser.add_argument("--config", metavar="FILE", help=f"YAML settings file (also {CONFIG_ENV}).")
    for name, field in Settings.model_fields.items():
        if _is_secret(field):
            continue
        flag = _flag(name, field)
        default = "unset" if field.default is None else field.default
        help_text = f"{field.description} (default: {default}; env {ENV_PREFIX}{name.upper()})"
        if field.annotation is bool:
            parser.add_argument(
                flag.name, dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif _is_sequence(field):
            parser.add_argument(
                flag.name, dest=name, action="append", metavar=flag.metavar, help=help_text
            )
        else:
            parser.add_argument(flag.name, dest=name, metavar=flag.metavar, help=help_text)
    return parser


def _read_file(path: Path) -> dict[str, Any]:
    # Called once before the event loop starts, so a plain read is fine here.
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"config: cannot read {path}: {reason}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict) or not all(isinstance(key, str) for key in loaded):
        raise ConfigError(f"config: {path} must be a mapping of setting names to values")
    return loaded


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        raw = environ.get(ENV_PREFIX + name.upper(), "")
        if raw == "":  # an empty variable counts as unset, as in most container tooling
            continue
        values[name] = (
            [part for part in raw.split(os.pathsep) if part] if _is_sequence(field) else raw
        )
    return values


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """What to say of each NOVEL_ENGINE_ variable that names no setting (a misspelt name would
    otherwise be ignored in silence), with the nearest setting's variable if one is close."""
    # (names compared without the prefix that they all share)
    known = sorted(
        {CONFIG_ENV.removeprefix(ENV_PREFIX)} | {n.upper() for n in Settings.model_fields}
    )
    unknown = [
        name
        for name in sorted(environ)
        if name.startswith(ENV_PREFIX)
        and (suffix := name.removeprefix(ENV_PREFIX)) not in known
        and not _SERVICE_LINK.fullmatch(suffix)
    ]
    if not unknown:
        return []
    import difflib  # (here: 0.2 MiB that an engine without a misspelt name does not carry)

    notes = []
    for name in unknown:
        note = f"{name} names no setting; ignored"
        misspelt = name.removeprefix(ENV_PREFIX).upper()  # (in any case)
        if close := difflib.get_close_matches(misspelt, known, n=1):
            note += f" (did you mean {ENV_PREFIX}{close[0]}?)"
        notes.append(note)
    return notes


def _describe(error: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    location = ".".join(str(part) for part in error["loc"])
    message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
    source = sources.get(str(error["loc"][0]) if error["loc"] else "", "defaults")
    return f"{location}: {message} (from {source})"


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Merge flags > env > YAML file > defaults into Settings; raise ConfigError if invalid."""
    environ = os.environ if environ is None else environ
    flags = vars(build_parser().parse_args(argv))
    config_path = flags.pop("config", None) or environ.get(CONFIG_ENV) or None

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers: list[tuple[dict[str, Any], Callable[[str], str]]] = []
    if config_path is not None:
        layers.append((_read_file(Path(config_path)), lambda _: str(config_path)))
    layers.append((_from_environ(environ), lambda key: ENV_PREFIX + key.upper()))
    layers.append((flags, lambda key: _flag(key, Settings.model_fields[key]).name))
    for layer, source_of in layers:
        for key, value in layer.items():
            values[key] = value
            sources[key] = source_of(key)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(e, sources) for e in exc.errors())) from None
