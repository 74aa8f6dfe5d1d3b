"""Tune's warning about trials with no results yet (never started) stays off the console."""

from __future__ import annotations

import logging

import pytest

from rest_sweep import tuner

NOT_STARTED = (
    "- TrainTrial_1a2b3c4d: FileNotFoundError('Could not fetch metrics for TrainTrial_1a2b3c4d: "
    "both result.json and progress.csv were not found at /s/tune/L001/TrainTrial_1a2b3c4d')"
)
OTHER = "- TrainTrial_5e6f7a8b: ValueError('bad row')"


def _record(*failures: str) -> logging.LogRecord:
    return logging.LogRecord(
        tuner.ANALYSIS_LOGGER,
        logging.WARNING,
        __file__,
        1,
        f"Failed to fetch metrics for {len(failures)} trial(s):\n" + "\n".join(failures),
        None,
        None,
    )


def test_a_warning_only_about_trials_that_never_started_is_dropped() -> None:
    assert tuner._NotStartedFilter().filter(_record(NOT_STARTED, NOT_STARTED)) is False


def test_other_fetch_failures_are_kept_and_recounted() -> None:
    record = _record(NOT_STARTED, OTHER)
    assert tuner._NotStartedFilter().filter(record) is True
    assert record.getMessage() == f"Failed to fetch metrics for 1 trial(s):\n{OTHER}"
    unrelated = _record(OTHER)
    assert tuner._NotStartedFilter().filter(unrelated) is True
    assert unrelated.getMessage().endswith(OTHER)


def test_route_ray_output_installs_the_filter_once(
    tmp_path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = logging.getLogger(tuner.ANALYSIS_LOGGER)
    monkeypatch.setattr(logger, "filters", [])
    monkeypatch.setattr(tuner, "_raylet_log", [None])
    monkeypatch.setenv(tuner.TUNE_TRACEBACKS_ENV, "0")
    tuner.route_ray_output(str(tmp_path / "ray-messages.log"))
    tuner.route_ray_output(str(tmp_path / "ray-messages.log"))
    assert sum(isinstance(f, tuner._NotStartedFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=tuner.ANALYSIS_LOGGER):
        logger.warning("Failed to fetch metrics for 1 trial(s):\n%s", NOT_STARTED)
        logger.warning("Failed to fetch metrics for 1 trial(s):\n%s", OTHER)
    messages = [r.getMessage() for r in caplog.records if r.name == tuner.ANALYSIS_LOGGER]
    assert len(messages) == 1 and OTHER in messages[0]
