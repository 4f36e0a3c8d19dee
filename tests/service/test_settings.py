"""Settings: VDVAE_* environment variables, one CLI flag per setting, validation, start-up logging."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, build_parser, flag_name, log_settings, settings_from_cli


def test_environment_variables_set_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VDVAE_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("VDVAE_MODEL_DIR", "/models")
    monkeypatch.setenv("VDVAE_WARMUP", "false")
    s = Settings()
    assert (s.max_batch_size, s.model_dir, s.warmup) == (7, Path("/models"), False)


def test_every_setting_is_a_cli_flag() -> None:
    help_text = build_parser().format_help()
    for name in Settings.model_fields:
        assert flag_name(name) in help_text, name
        assert f"VDVAE_{name.upper()}" in help_text, name


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VDVAE_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("VDVAE_PORT", "9000")
    s = settings_from_cli(
        ["--max-batch-size", "3", "--no-warmup", "--amp", "bf16", "--max-batch-delay-ms", "2.5"]
    )
    assert (s.max_batch_size, s.port, s.warmup, s.amp, s.max_batch_delay_ms) == (3, 9000, False, "bf16", 2.5)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--max-batch-size", "0"], "--max-batch-size"),
        (["--device", "tpu"], "--device"),
        (["--min-temperature", "3", "--max-temperature", "2"], "min_temperature"),
        (["--max-images-per-request", "100", "--max-queue-images", "10"], "max_queue_images"),
        (["--amp", "int8"], "--amp"),
    ],
)
def test_bad_values_exit_2_naming_the_setting(argv, flag, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        settings_from_cli(argv)
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err


def test_unknown_settings_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(max_batch=3)


def test_non_default_settings_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.settings")
    with caplog.at_level(logging.INFO, logger="test.settings"):
        log_settings(Settings(max_batch_size=4, port=1234), logger)
    assert "max_batch_size=4" in caplog.text and "port=1234" in caplog.text
    assert "model_dir" not in caplog.text
    assert Settings().non_default() == {}
