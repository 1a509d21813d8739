"""Settings come from flags > env > YAML file > defaults, and bad input names the setting."""

from pathlib import Path

import pytest

from novel_engine.config import (
    ConfigError,
    Settings,
    build_parser,
    load_settings,
    unknown_variables,
)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "engine.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_source() -> None:
    settings = load_settings([], {})
    assert settings == Settings()
    assert settings.port == 8080
    assert settings.host == "127.0.0.1"
    assert settings.redis_url is None


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, "port: 7000\nqueue_limit: 10\ndrain_timeout: 5\n")
    environ = {"NOVEL_ENGINE_PORT": "7001", "NOVEL_ENGINE_QUEUE_LIMIT": "11"}
    settings = load_settings(["--config", str(config), "--port", "7002"], environ)
    assert settings.port == 7002
    assert settings.queue_limit == 11
    assert settings.drain_timeout == 5.0


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = write_config(tmp_path, "data_dir: /var/lib/engine\nread_only_content: true\n")
    settings = load_settings([], {"NOVEL_ENGINE_CONFIG": str(config)})
    assert settings.data_dir == Path("/var/lib/engine")
    assert settings.read_only_content is True


def test_boolean_flag_overrides_env_both_ways() -> None:
    assert load_settings(["--read-only-content"], {}).read_only_content is True
    environ = {"NOVEL_ENGINE_READ_ONLY_CONTENT": "true"}
    assert load_settings(["--no-read-only-content"], environ).read_only_content is False


def test_content_dirs_from_repeated_flag_and_env() -> None:
    flags = load_settings(["--content", "a", "--content", "b"], {})
    assert flags.content_dirs == (Path("a"), Path("b"))
    env = load_settings([], {"NOVEL_ENGINE_CONTENT_DIRS": "x:y"})
    assert env.content_dirs == (Path("x"), Path("y"))


def test_redis_password_from_env_only() -> None:
    environ = {
        "NOVEL_ENGINE_REDIS_URL": "redis://127.0.0.1:1/0",
        "NOVEL_ENGINE_REDIS_PASSWORD": "s3",
    }
    settings = load_settings([], environ)
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "s3"
    assert "s3" not in repr(settings)
    with pytest.raises(ConfigError, match="unrecognized arguments: --redis-password"):
        load_settings(["--redis-password", "s3"], {})


@pytest.mark.parametrize(
    "url",
    [
        "rediss://cache:6380/0?ssl_cert_reqs=none",
        "redis://cache/1?socket_timeout=2&health_check_interval=3",
        "unix:///run/redis.sock?db=2",
    ],
)
def test_redis_urls_with_options_their_connection_takes_are_accepted(url: str) -> None:
    assert load_settings(["--redis-url", url], {}).redis_url == url


def test_log_level_is_case_insensitive() -> None:
    assert load_settings(["--log-level", "debug"], {}).log_level == "DEBUG"


def test_empty_env_variable_counts_as_unset() -> None:
    assert load_settings([], {"NOVEL_ENGINE_L1_MAX_BYTES": ""}).l1_max_bytes is None


RETENTION_90 = ("--job-retention-seconds", "90")


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (
            ["--port", "70000"],
            {},
            "port: Input should be less than or equal to 65535 (from --port)",
        ),
        (
            [],
            {"NOVEL_ENGINE_DRAIN_TIMEOUT": "soon"},
            "drain_timeout: Input should be a valid number, unable to parse string as a number "
            "(from NOVEL_ENGINE_DRAIN_TIMEOUT)",
        ),
        (
            ["--redis-url", "localhost:6379"],
            {},
            "redis_url: Value error, must start with redis://, rediss:// or unix:// "
            "(from --redis-url)",
        ),
        (
            ["--redis-url", "redis://127.0.0.1:99999"],
            {},
            "redis_url: Value error, Port out of range 0-65535 (from --redis-url)",
        ),
        (
            ["--redis-url", "redis://cache/0?socket_timeout=soon"],
            {},
            "redis_url: Value error, Invalid value for 'socket_timeout' in connection URL. "
            "(from --redis-url)",
        ),
        (
            ["--redis-url", "redis://cache/0?sockettimeout=3"],
            {},
            "redis_url: Value error, the URL's option 'sockettimeout' is not one redis-py takes"
            " here (from --redis-url)",
        ),
        (
            ["--redis-url", "redis://cache/0?protocol=4"],
            {},
            "redis_url: Value error, an option of the URL cannot be used: protocol must be either"
            " 2 or 3 (from --redis-url)",
        ),
        # TLS options belong to rediss:// only.
        (
            ["--redis-url", "redis://cache/0?ssl_cert_reqs=none"],
            {},
            "redis_url: Value error, the URL's option 'ssl_cert_reqs' is not one redis-py takes"
            " here (from --redis-url)",
        ),
        (
            ["--redis-url", "redis://cache:6379/jobs"],
            {},
            "redis_url: Value error, the database in the path must be a number, not 'jobs' "
            "(from --redis-url)",
        ),
        (
            ["--log-level", "chatty"],
            {},
            "log_level: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL' "
            "(from --log-level)",
        ),
        # An infinite delay never ends; an infinite TTL overflows the Redis expiry.
        (
            ["--shutdown-delay", "inf"],
            {},
            "shutdown_delay: Input should be a finite number (from --shutdown-delay)",
        ),
        # A finite delay no pod waits for would still never lead to the drain.
        (
            ["--shutdown-delay", "1e308"],
            {},
            "shutdown_delay: Input should be less than or equal to 3600 (from --shutdown-delay)",
        ),
        (
            [],
            {"NOVEL_ENGINE_L2_TTL_SECONDS": "NaN"},
            "l2_ttl_seconds: Input should be a finite number (from NOVEL_ENGINE_L2_TTL_SECONDS)",
        ),
        # A dead replica's jobs would expire before their leases lapse: nobody would run them.
        (
            ["--redis-url", "redis://cache", "--job-lease-seconds", "60", *RETENTION_90],
            {},
            "job_lease_seconds: Value error, must be at most half of job_retention_seconds"
            " (90), so that the jobs of a replica that died are taken over before their records"
            " expire (from --job-lease-seconds)",
        ),
        # An empty host would listen on every interface.
        (["--host", ""], {}, "host: String should have at least 1 character (from --host)"),
        # Path("") is the working directory.
        (
            ["--data-dir", ""],
            {},
            'data_dir: Value error, must name a directory (".": the working directory)'
            " (from --data-dir)",
        ),
        # Redis refuses such lifetimes at every write (past its clock's range in milliseconds).
        (
            ["--redis-url", "redis://cache", "--job-retention-seconds", "1e16"],
            {},
            "job_retention_seconds: Input should be less than or equal to 315360000"
            " (from --job-retention-seconds)",
        ),
        (
            [],
            {"NOVEL_ENGINE_L2_TTL_SECONDS": "1e16"},
            "l2_ttl_seconds: Input should be less than or equal to 315360000"
            " (from NOVEL_ENGINE_L2_TTL_SECONDS)",
        ),
    ],
)
def test_bad_values_name_the_setting_and_source(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(argv, environ)
    assert str(caught.value) == message


def test_a_boolean_is_no_number_in_the_file(tmp_path: Path) -> None:
    # YAML reads `true` as a boolean, which would otherwise become port 1.
    config = write_config(tmp_path, "port: true\nread_only_content: true\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(["--config", str(config)], {})
    assert str(caught.value) == f"port: a boolean is not a valid value here (from {config})"


def test_unknown_file_key_is_named(tmp_path: Path) -> None:
    config = write_config(tmp_path, "port: 8081\ncolour: blue\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(["--config", str(config)], {})
    assert str(caught.value) == f"colour: unknown setting (from {config})"


def test_an_env_variable_naming_no_setting_is_told_with_the_nearest_one() -> None:
    environ = {
        "NOVEL_ENGINE_QUEUE_LIMT": "5",
        "NOVEL_ENGINE_data_dir": "/elsewhere",
        "NOVEL_ENGINE_COLOUR": "blue",
        "NOVEL_ENGINE_QUEUE_LIMIT": "6",
        "NOVEL_ENGINE_CONFIG": "",
        "QUEUE_LIMIT": "7",
    }
    assert unknown_variables(environ) == [
        "NOVEL_ENGINE_COLOUR names no setting; ignored",
        "NOVEL_ENGINE_QUEUE_LIMT names no setting; ignored"
        " (did you mean NOVEL_ENGINE_QUEUE_LIMIT?)",
        "NOVEL_ENGINE_data_dir names no setting; ignored (did you mean NOVEL_ENGINE_DATA_DIR?)",
    ]
    assert load_settings([], environ).queue_limit == 6  # the environment is shared: no error


def test_kubernetes_service_link_variables_are_no_misspelt_settings() -> None:
    # What a pod gets for Services named novel-engine and novel-engine-metrics in its namespace.
    environ = {
        "NOVEL_ENGINE_SERVICE_HOST": "10.96.0.12",
        "NOVEL_ENGINE_SERVICE_PORT": "8080",
        "NOVEL_ENGINE_SERVICE_PORT_HTTP": "8080",
        "NOVEL_ENGINE_PORT_8080_TCP": "tcp://10.96.0.12:8080",
        "NOVEL_ENGINE_PORT_8080_TCP_PROTO": "tcp",
        "NOVEL_ENGINE_PORT_8080_TCP_PORT": "8080",
        "NOVEL_ENGINE_PORT_8080_TCP_ADDR": "10.96.0.12",
        "NOVEL_ENGINE_METRICS_SERVICE_HOST": "10.96.0.13",
        "NOVEL_ENGINE_METRICS_PORT": "tcp://10.96.0.13:9090",
    }
    assert unknown_variables(environ) == []


def test_bad_file_value_is_named(tmp_path: Path) -> None:
    config = write_config(tmp_path, "db_pool_size: 0\n")
    with pytest.raises(ConfigError, match=r"^db_pool_size: .* \(from .*engine.yaml\)$"):
        load_settings(["--config", str(config)], {})


@pytest.mark.parametrize(
    "text",
    ["port: [unclosed\n", "- a list\n- not a mapping\n", "port: 8081\nport: 8082\n"],
    ids=["syntax", "not-mapping", "key-twice"],
)
def test_unreadable_file_is_one_line(tmp_path: Path, text: str) -> None:
    config = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(["--config", str(config)], {})
    assert str(caught.value).startswith("config: ")
    assert "\n" not in str(caught.value)


def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_bytes(b"port: 8081\nhost: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"^config: cannot read .*engine.yaml: 'utf-8' codec"):
        load_settings(["--config", str(config)], {})


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config: cannot read .*missing.yaml"):
        load_settings(["--config", str(tmp_path / "missing.yaml")], {})


def test_unknown_flag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--colour"):
        load_settings(["--colour", "blue"], {})


def test_every_setting_but_secrets_has_a_flag_with_its_description() -> None:
    help_text = " ".join(build_parser().format_help().split())
    for name, field in Settings.model_fields.items():
        flag = "--content" if name == "content_dirs" else "--" + name.replace("_", "-")
        assert (flag in help_text) == (name != "redis_password"), name
        assert field.description is not None
        assert " ".join(field.description.split())[:30] in help_text


def test_settings_are_immutable() -> None:
    settings = load_settings([], {})
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]
