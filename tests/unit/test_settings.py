import pytest

from ntplatform.errors import ConfigError
from ntplatform.settings import Settings, load_settings


def test_load_settings_empty_environment_gives_spec_defaults():
    settings = load_settings({})
    assert settings == Settings()
    assert settings.symbols == ("BTCUSDT", "ETHUSDT")
    assert settings.report_period_ms == 250
    assert settings.heartbeat_ttl_ms == 5000
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


def test_load_settings_values_are_parsed_and_normalised():
    settings = load_settings(
        {
            "SYMBOLS": " btcusdt , ethusdt,SOLUSDT ",
            "NT_REPORT_PERIOD_MS": "100",
            "NT_ENABLE_STREAMS": "false",
            "NT_HRW_STICKY_PCT": "0.05",
            "NT_LOG_LEVEL": "DEBUG",
            "NT_BINANCE_ACCOUNT": "usdm",
            "NT_BINANCE_HTTP_URL": "http://127.0.0.1:8790/",
            "NT_BINANCE_WS_URL": "ws://127.0.0.1:8790",
        }
    )
    assert settings.symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert settings.report_period_ms == 100
    assert settings.enable_streams is False
    assert settings.hrw_sticky_pct == 0.05
    assert settings.log_level == "debug"
    assert settings.binance_account == "usdm"
    assert settings.binance_http_url == "http://127.0.0.1:8790"
    assert settings.uses_replay


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("NT_REPORT_PERIOD_MS", "fast", "NT_REPORT_PERIOD_MS='fast': an integer >= 10"),
        ("NT_REPORT_PERIOD_MS", "-5", "an integer >= 10"),
        ("NT_ENABLE_STREAMS", "maybe", "true or false"),
        ("NT_LOG_LEVEL", "verbose", "one of debug, info, warning, error"),
        ("NT_BINANCE_ACCOUNT", "coinm", "one of spot, usdm"),
        ("SYMBOLS", "BTCUSDT,,ETHUSDT", "comma-separated list"),
        ("SYMBOLS", "BTC/USDT", "must be 2-20 letters or digits"),
        ("SYMBOLS", "BTCUSDT,btcusdt", "each symbol at most once"),
        ("NT_HRW_STICKY_PCT", "2", "a number from 0.0 to 1.0"),
        ("REDIS_URL", "http://localhost:6379", "a URL with scheme redis or rediss or unix"),
        ("NT_NODE_ID", "node 1", "letters, digits"),
    ],
)
def test_load_settings_bad_value_names_variable_value_and_allowed(variable, value, expected):
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: value})
    message = str(caught.value)
    assert variable in message
    assert expected in message
    assert "\n" not in message


def test_load_settings_lease_ttl_not_above_report_period_is_rejected():
    with pytest.raises(ConfigError, match=r"NT_LEASE_TTL_MS=250: must exceed NT_REPORT_PERIOD_MS \(250\)"):
        load_settings({"NT_LEASE_TTL_MS": "250"})


def test_load_settings_only_one_exchange_url_is_rejected():
    with pytest.raises(ConfigError, match="set NT_BINANCE_HTTP_URL and NT_BINANCE_WS_URL together"):
        load_settings({"NT_BINANCE_HTTP_URL": "http://127.0.0.1:8790"})


def test_load_settings_redis_password_never_appears_in_errors():
    with pytest.raises(ConfigError) as caught:
        load_settings({"REDIS_URL": "http://:hunter2@localhost:6379"})
    assert "hunter2" not in str(caught.value)


def test_coordination_fingerprint_changes_with_lease_settings_only():
    base = load_settings({})
    assert (
        base.coordination_fingerprint() == load_settings({"NT_LOG_LEVEL": "debug"}).coordination_fingerprint()
    )
    assert (
        base.coordination_fingerprint()
        != load_settings({"NT_LEASE_TTL_MS": "3000"}).coordination_fingerprint()
    )


@pytest.mark.parametrize("url", ["redis://127.0.0.1:notaport/0", "redis://127.0.0.1:70000/0"])
def test_load_settings_redis_url_bad_port_is_one_clear_line(url):
    with pytest.raises(ConfigError, match=r"REDIS_URL=.*the port must be a number from 0 to 65535"):
        load_settings({"REDIS_URL": url})


def test_dagster_settings_defaults_and_values():
    from ntplatform.settings import DagsterSettings, load_dagster_settings

    assert load_dagster_settings({}) == DagsterSettings(
        redis_url="redis://127.0.0.1:6379/0",
        symbols=("BTCUSDT", "ETHUSDT"),
        expected_nodes=(),
        supervisor_url="http://127.0.0.1:9199",
        stream_maxlen=100_000,
    )
    settings = load_dagster_settings(
        {
            "SYMBOLS": "solusdt, BTCUSDT",
            "NT_EXPECTED_NODES": "producer-node-001, producer-node-002",
            "NT_SUPERVISOR_URL": "http://10.0.0.5:9199/",
            "NT_STREAM_MAXLEN": "5000",
        }
    )
    assert settings.symbols == ("SOLUSDT", "BTCUSDT")
    assert settings.expected_nodes == ("producer-node-001", "producer-node-002")
    assert settings.supervisor_url == "http://10.0.0.5:9199"
    assert settings.stream_maxlen == 5000


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SYMBOLS", "garbage!!", "symbol 'GARBAGE!!' must be 2-20 letters or digits"),
        ("NT_EXPECTED_NODES", "a/b,c", "1-64 letters, digits"),
        ("NT_EXPECTED_NODES", "producer-node-001,,c", "a comma-separated list of node ids"),
        ("NT_SUPERVISOR_URL", "notaurl", "a URL with scheme http or https"),
        ("NT_STREAM_MAXLEN", "abc", "an integer >= 1 and <= 100000000"),
        ("REDIS_URL", "bogus", "a URL with scheme redis or rediss or unix"),
        ("NT_ARCHIVE_DIR", "ftp://u:pw@host/x", "'ftp://u:***@host/x': scheme ftp:// is not supported"),
        ("NT_BACKFILL_DIR", "/etc/passwd", "it is a file (/etc/passwd); a folder is needed"),
    ],
)
def test_dagster_settings_bad_value_is_one_line_naming_it(variable, value, expected):
    from ntplatform.settings import load_dagster_settings

    with pytest.raises(ConfigError) as caught:
        load_dagster_settings({variable: value})
    message = str(caught.value)
    assert message.startswith(f"invalid configuration: {variable}=")
    assert expected in message
    assert "\n" not in message


def test_redis_url_may_be_a_unix_socket_but_needs_its_path():
    assert (
        load_settings({"REDIS_URL": "unix:///run/redis/redis.sock"}).redis_url
        == "unix:///run/redis/redis.sock"
    )
    with pytest.raises(ConfigError, match="REDIS_URL='unix://': a URL with scheme redis or rediss or unix"):
        load_settings({"REDIS_URL": "unix://"})
