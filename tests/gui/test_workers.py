"""The worker-thread runner: results on the GUI thread, progress only for slow jobs."""

from __future__ import annotations

import threading
import time

import pytest

from napari_samlabel._napari.workers import PROGRESS_DELAY_MS, ThreadRunner

pytestmark = pytest.mark.gui


class _Bars:
    """Stands in for napari's progress bar; records what was shown."""

    def __init__(self):
        self.shown, self.closed = [], []

    def __call__(self, total=0, desc=""):
        bars = self

        class Bar:
            def close(self):
                bars.closed.append(desc)

        self.shown.append(desc)
        return Bar()


def test_progress_only_for_jobs_slower_than_the_delay(qtbot, monkeypatch):
    import napari.utils

    bars = _Bars()
    monkeypatch.setattr(napari.utils, "progress", bars)
    runner = ThreadRunner("test-runner")
    done, threads = [], []

    def job(seconds, value):
        def run():
            threads.append(threading.current_thread().name)
            time.sleep(seconds)
            return value
        return run

    runner.start(job(0.0, "cached"), done.append, pytest.fail, "Encoding cached")
    runner.start(job(0.0, "prefetched"), done.append, pytest.fail, "Prefetching next")
    qtbot.waitUntil(lambda: len(done) == 2, timeout=5000)
    qtbot.wait(PROGRESS_DELAY_MS + 100)
    assert bars.shown == []                      # a cache hit and a prefetch: no bar
    runner.start(job(2 * PROGRESS_DELAY_MS / 1000, "slow"), done.append, pytest.fail,
                 "Encoding slow")
    qtbot.waitUntil(lambda: len(done) == 3, timeout=5000)
    assert bars.shown == ["Encoding slow"] and bars.closed == ["Encoding slow"]
    assert done == ["cached", "prefetched", "slow"] and set(threads) == {"test-runner"}
    runner.close()


def test_launch_imports_the_model_libraries_before_the_window(monkeypatch, tmp_path):
    import napari

    from napari_samlabel._napari import launch

    order = []
    monkeypatch.setattr(launch, "preload_model_libraries", lambda: order.append("preload"))

    class Stop(Exception):
        pass

    def viewer(**_):
        order.append("viewer")
        raise Stop

    monkeypatch.setattr(napari, "Viewer", viewer)
    with pytest.raises(Stop):
        launch.launch(tmp_path, run=False)
    assert order == ["preload", "viewer"]
