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

    from napari_samlabel._napari import workers

    monkeypatch.setattr(workers, "software_gl", False)
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


def test_an_encode_shows_a_determinate_bar_of_its_blocks(qtbot, monkeypatch):
    """The encoder's block progress reaches napari's bar (no animated, indeterminate bar)."""
    import napari.utils

    from napari_samlabel.engine.base import _PROGRESS

    made = []

    class Bar:
        def __init__(self, total=0, desc=""):
            self.total, self.n, self.desc, self.closed = total, 0, desc, False
            made.append(self)

        def update(self, n=1):
            self.n += n

        def close(self):
            self.closed = True

    from napari_samlabel._napari import workers

    monkeypatch.setattr(workers, "software_gl", False)
    monkeypatch.setattr(napari.utils, "progress", Bar)
    runner = ThreadRunner("test-runner")
    done = []

    def encode():
        report = _PROGRESS.callback  # what an engine's encoder hooks call
        for k in range(5):
            report(k, 4)
            time.sleep(PROGRESS_DELAY_MS / 1000 / 2)
        return "encoded"

    runner.start(encode, done.append, pytest.fail, "Encoding a")
    qtbot.waitUntil(lambda: done == ["encoded"], timeout=10000)
    assert len(made) == 1 and made[0].total == 4      # determinate from the start
    assert made[0].n == 4 and made[0].closed
    runner.close()


def test_with_software_gl_an_encode_reports_on_the_status_line_not_in_napari(
        qtbot, monkeypatch):
    """No GPU: napari's animated activity indicator would take CPU from the encode."""
    import napari.utils

    from napari_samlabel._napari import workers
    from napari_samlabel.engine.base import _PROGRESS

    bars = _Bars()
    monkeypatch.setattr(napari.utils, "progress", bars)
    monkeypatch.setattr(workers, "software_gl", True)
    runner = ThreadRunner("test-runner")
    seen, done = [], []
    runner.on_blocks = lambda label, k, n: seen.append((label, k, n))

    def encode():
        for k in range(3):
            _PROGRESS.callback(k, 2)
            time.sleep(PROGRESS_DELAY_MS / 1000)
        return "encoded"

    runner.start(encode, done.append, pytest.fail, "Encoding a")
    runner.start(lambda: time.sleep(2 * PROGRESS_DELAY_MS / 1000), done.append, pytest.fail,
                 "Loading vit_b")  # loading keeps napari's bar
    qtbot.waitUntil(lambda: len(done) == 2, timeout=10000)
    assert seen == [("Encoding a", 0, 2), ("Encoding a", 1, 2), ("Encoding a", 2, 2)]
    assert bars.shown == ["Loading vit_b"]
    runner.close()


def test_transient_runs_in_a_thread_that_ends_and_passes_errors_on():
    from napari_samlabel._napari.workers import run_transient

    names = []
    assert run_transient(lambda: names.append(threading.current_thread()) or 7) == 7
    assert names[0] is not threading.current_thread() and not names[0].is_alive()
    with pytest.raises(KeyError, match="boom"):
        run_transient(lambda: {}["boom"])


def test_the_widget_shows_an_encodes_blocks_on_its_status_line(annotate, image_folder):
    _, widget, _ = annotate(image_folder)
    runners = widget._runners()
    assert runners["runner"].on_blocks == widget._on_blocks     # the engine lane reports
    assert runners["prefetch_runner"].transient                  # prefetching in own threads
    for runner in runners.values():
        runner.close()
    widget._on_blocks("Encoding img_1", 3, 12)
    assert "encoding img_1: 3/12 blocks" in widget.status_line.text()
    widget._on_blocks("Encoding img_1", 12, 12)
    assert "blocks" not in widget.status_line.text()
