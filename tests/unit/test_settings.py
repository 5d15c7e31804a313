"""Settings come from the environment and refuse bad values with the variable's name."""

from __future__ import annotations

from datetime import timedelta

import pytest

from registry_common.settings import AuthMode, ConfigError, load_settings, parse_duration


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("DB_URL", "AUTH_MODE", "HOST", "LOG_LEVEL", "GC_GRACE_PERIOD", "PORT"):
        monkeypatch.delenv(variable, raising=False)


def test_defaults_match_the_seed_service() -> None:
    settings = load_settings()
    assert settings.port == 8080
    assert settings.auth_mode is AuthMode.DEPLOYS
    assert settings.auth_api_url == "https://api.deploys.app"
    assert settings.auth_cache_ttl == timedelta(seconds=30)
    assert settings.gc_grace_period == timedelta(days=1)


def test_reads_upper_case_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_URL", "postgres://u:p@127.0.0.1:5432/registry")
    monkeypatch.setenv("PORT", "5000")
    monkeypatch.setenv("GC_GRACE_PERIOD", "2h")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.db_url == "postgres://u:p@127.0.0.1:5432/registry"
    assert settings.port == 5000
    assert settings.gc_grace_period == timedelta(hours=2)
    assert settings.log_level.value == "DEBUG"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DB_URL", "nonsense"),
        ("DB_URL", "mysql://u@h/db"),
        ("LOG_LEVEL", "LOUD"),
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("AUTH_MODE", "trust-me"),
        ("GC_GRACE_PERIOD", "soon"),
        ("AUTH_API_URL", "ftp://api"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert raised.value.variable == variable
    assert "\n" not in str(raised.value)


def test_auth_none_is_refused_on_a_public_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_MODE", "none")
    monkeypatch.setenv("HOST", "0.0.0.0")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert raised.value.variable == "AUTH_MODE"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "::1", "localhost"])
def test_auth_none_is_allowed_on_loopback(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("AUTH_MODE", "none")
    monkeypatch.setenv("HOST", host)
    assert load_settings().auth_mode is AuthMode.NONE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30", timedelta(seconds=30)),
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(hours=24)),
        ("1d", timedelta(days=1)),
        ("250ms", timedelta(milliseconds=250)),
    ],
)
def test_parse_duration_accepts_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_missing_db_url_is_reported_when_required() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings().require_db_url()
    assert raised.value.variable == "DB_URL"
