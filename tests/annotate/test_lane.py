"""The engine lane: one job at a time, newest of a kind wins, errors reported."""

from __future__ import annotations

import pytest

from napari_samlabel.annotate.lane import EngineLane, SyncRunner
from tests.annotate.runners import ManualRunner


def test_lane_runs_one_job_at_a_time_newest_of_a_kind_wins():
    runner = ManualRunner()
    lane = EngineLane(runner)
    done = []
    lane.submit("decode", lambda: lambda: "d1", done.append)
    lane.submit("decode", lambda: lambda: "d2", done.append)
    lane.submit("prefetch", lambda: lambda: "p", done.append)
    lane.submit("decode", lambda: lambda: "d3", done.append)
    lane.submit("encode", lambda: lambda: "e", done.append)
    assert len(runner.started) == 1                      # one at a time
    runner.finish()
    runner.finish()
    runner.finish()
    runner.finish()
    assert done == ["d1", "e", "d3", "p"]                # d2 superseded; priority order
    assert lane.idle
    with pytest.raises(ValueError, match="unknown job kind"):
        lane.submit("paint", lambda: None, done.append)


def test_lane_reports_errors_and_keeps_going():
    errors = []
    lane = EngineLane(SyncRunner(), lambda kind, exc: errors.append((kind, str(exc))))
    done = []

    def boom():
        raise RuntimeError("no image")

    lane.submit("decode", lambda: boom, done.append)
    lane.submit("decode", lambda: lambda: 1, done.append)
    assert errors == [("decode", "no image")] and done == [1] and lane.idle
