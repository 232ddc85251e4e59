"""How long does the annotator block napari's GUI thread? Longest stall per phase.

A 5 ms ``QTimer`` heartbeat runs on the GUI thread; the longest gap between two beats in a
phase is how long the window was frozen then. The phases follow an annotator's first
minute: ``launch`` (as ``samlabel annotate`` does, the model loading in a worker), a few
clicks and an accept, then navigation: next image (prefetched), previous image (embedding
cached), a jump to a 4000 x 3000 camera photo, and back.

Real VOC photos from ``/work/shared/data/voc-sample`` (else the bundled samples); the model
is the tiny random-weight SAM by default (loading it costs what importing torch and building a
model cost); ``--model vit_b`` loads the real architecture from a random-weights checkpoint.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_gui_stalls.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VOC = Path("/work/shared/data/voc-sample/VOC2012/JPEGImages")


def photos(folder: Path, n: int) -> None:
    """``n`` real photos and one 4000 x 3000 JPEG (a camera's size) into ``folder``."""
    from PIL import Image

    srcs = sorted(VOC.glob("*.jpg"))[:n] if VOC.is_dir() else []
    if not srcs:
        from napari_samlabel.annotate.samples import sample_paths

        srcs = list(sample_paths())
    for p in srcs:
        shutil.copy(p, folder / p.name)
    Image.open(srcs[0]).convert("RGB").resize((4000, 3000)).save(folder / "zz_big.jpg",
                                                                   quality=90)


def main() -> None:
    from napari_samlabel.engine.device import tune_memory

    tune_memory()  # as the samlabel command does, before torch is imported
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vit_tiny_test")
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="samlabel-stalls-"))
    os.environ["SAMLABEL_CACHE_DIR"] = str(tmp / "cache")
    # The checkpoint is made in a child process: torch must not be imported here before
    # the launch (the launch's own imports are part of what is measured).
    checkpoint = str(tmp / f"{args.model}.pth")
    make = ("from napari_samlabel.testing.models import save_tiny_checkpoint as save"
            if args.model == "vit_tiny_test" else
            "import torch\nfrom napari_samlabel.engine.registry import get_model_spec\n"
            f"save = lambda p: torch.save(get_model_spec({args.model!r}).build().state_dict(), p)")
    subprocess.run([sys.executable, "-c", f"import sys\n{make}\nsave(sys.argv[1])", checkpoint],
                   check=True)
    folder = tmp / "images"
    folder.mkdir()
    photos(folder, args.images)

    from napari.settings import get_settings
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_samlabel._napari.launch import launch

    get_settings().application.gui_notification_level = "none"
    stalls: dict[str, float] = {}
    phase = {"name": "", "last": 0.0}

    def tick() -> None:
        now = time.perf_counter()
        name = phase["name"]
        stalls[name] = max(stalls.get(name, 0.0), now - phase["last"])
        phase["last"] = now

    def begin(name: str) -> None:
        phase["name"], phase["last"] = name, time.perf_counter()

    t0 = time.perf_counter()
    begin("launch (GUI thread, before the loop runs)")
    widget = launch(folder, model=args.model, checkpoint=checkpoint, run=False)
    stalls[phase["name"]] = time.perf_counter() - t0
    app = QApplication.instance()
    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(5)
    a = widget.annotator
    s = a.session

    lanes = [getattr(s, n) for n in ("lane", "prefetch_lane", "load_lane") if hasattr(s, n)]

    def settle(seconds: float = 0.3, timeout: float = 120.0) -> None:
        end, start = time.time() + seconds, time.time()
        while (time.time() < end or s.engine is None or not all(la.idle for la in lanes)) \
                and time.time() - start < timeout:
            app.processEvents()
            time.sleep(0.002)

    begin("first paint of the window (shaders compile; the model loads meanwhile)")
    app.processEvents()
    begin("model load in a worker + first encode")
    settle(0.5)
    h, w = s.doc.shape
    begin("3 clicks + accept")
    for k in range(3):
        a.bridge.points_layer.add([h * (0.3 + 0.1 * k), w * 0.5])
        settle(0.2)
    a.accept()
    settle(0.2)
    begin("next image (prefetched)")
    a.next_image()
    settle(0.5)
    begin("previous image (embedding cached)")
    a.previous_image()
    settle(0.5)
    begin("jump to the 4000x3000 photo (encode runs)")
    s.open_image(len(s) - 1)
    settle(0.5)
    begin("back to image 1 (cached)")
    s.open_image(1)
    settle(0.5)
    timer.stop()
    widget.shutdown()
    widget.viewer.close()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"model {args.model}; longest GUI-thread stall per phase (ms):")
    for name, gap in stalls.items():
        print(f"  {gap * 1000:7.0f}  {name}")


if __name__ == "__main__":
    main()
