"""Results of simulated runs on disk: per-image files, tables, the cost model, the plot.

Layout of ``OUT`` (one folder per run, so runs of other models and settings add up)::

    OUT/runs/<run>/run.json            settings, model id, dataset
    OUT/runs/<run>/images/<id>.json    one image's result (written atomically; resume key)
    OUT/runs/<run>/objects.csv         one row per object: NoC, interactions, IoU, seconds
    OUT/runs/<run>/images.csv          one row per image: objects, decisions, seconds
    OUT/runs/<run>/curve.csv           mIoU after k interactions, k = 0..max_clicks
    OUT/runs/<run>/summary.json        the run's row of the table below, and the costs
    OUT/summary.csv, OUT/summary.md    one row per run (model x prompt x proposals)
    OUT/curve.png                      mIoU against interactions, one line per run

``<run>`` is ``<model>-<prompt>-<proposals>-<hash>``, the hash of the model identity and
every setting (:class:`~napari_samlabel.annotate.effort.simulate.Settings`): a rerun with
the same ones resumes, any change is a new run.

**Cost model** (seconds; :data:`DEFAULT_COSTS`, override any of them with a YAML or JSON
file of ``name: seconds``): ``click`` per point, ``box`` per box, ``scribble`` per stroke,
``decision`` per accepted or rejected proposal, ``class_choice`` per class picked. Result
files hold counts, not seconds, so the tables are recomputed with the costs of the latest
command (every row of ``OUT/summary.*`` uses the same costs).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.annotate.effort.simulate import ImageEffort, ObjectEffort, Settings
from napari_samlabel.core.fsutil import atomic_write_bytes, atomic_write_text

#: Seconds per action of the default cost model (see the module docstring).
DEFAULT_COSTS: dict[str, float] = {"click": 1.5, "box": 3.0, "scribble": 3.0,
                                   "decision": 1.0, "class_choice": 1.0}
#: mIoU columns of the summary table (after this many interactions).
CURVE_POINTS = (1, 2, 3, 5, 10)


class CostError(ValueError):
    """A cost file that cannot be used; the message names the file and the problem."""


def load_costs(path: str | os.PathLike[str] | None) -> dict[str, float]:
    """The default costs, with those of a YAML/JSON file of ``name: seconds`` over them."""
    costs = dict(DEFAULT_COSTS)
    if path is None:
        return costs
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CostError(f"cannot read the cost file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise CostError(f"{path}: expected a mapping of action: seconds, got "
                        f"{type(data).__name__}")
    for key, value in data.items():
        if key not in DEFAULT_COSTS:
            raise CostError(f"{path}: unknown action {key!r} (known: "
                            f"{', '.join(DEFAULT_COSTS)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise CostError(f"{path}: {key} must be a number of seconds >= 0, got {value!r}")
        costs[key] = float(value)
    return costs


def object_seconds(obj: ObjectEffort, costs: Mapping[str, float]) -> float:
    """Seconds one object costs (its prompts and class choice)."""
    return (obj.points * costs["click"] + obj.boxes * costs["box"]
            + obj.scribbles * costs["scribble"] + obj.class_choices * costs["class_choice"])


def image_seconds(img: ImageEffort, costs: Mapping[str, float]) -> float:
    """Seconds one image costs (its objects and the proposal decisions)."""
    return (sum(object_seconds(o, costs) for o in img.objects)
            + (img.accepted + img.rejected) * costs["decision"])


def run_name(settings: Settings) -> str:
    """``<model>-<prompt>-<proposals>-<hash>`` of a run (see the module docstring)."""
    import hashlib

    digest = hashlib.sha1(json.dumps(settings.to_dict(), sort_keys=True).encode()).hexdigest()
    model = re.sub(r"[^A-Za-z0-9._]+", "_", settings.model_id.split(":")[0])[:40]
    prompt = settings.prompt.replace("+", "_")
    return f"{model}-{prompt}-{settings.proposals}-{digest[:10]}"


class RunStore:
    """The folder of one run: its settings and per-image result files."""

    def __init__(self, out: str | os.PathLike[str], settings: Settings) -> None:
        self.out = Path(out)
        self.settings = settings
        self.folder = self.out / "runs" / run_name(settings)
        self.images = self.folder / "images"

    def start(self, dataset: str) -> None:
        """Create the folder and write ``run.json``."""
        self.images.mkdir(parents=True, exist_ok=True)
        info = {"settings": self.settings.to_dict(), "dataset": dataset}
        atomic_write_text(self.folder / "run.json", json.dumps(info, indent=2))

    def path(self, image_id: str) -> Path:
        """The result file of ``image_id``."""
        return self.images / f"{image_id}.json"

    def write(self, result: ImageEffort) -> None:
        """Write one image's result atomically (it is then finished)."""
        atomic_write_bytes(self.path(result.image_id),
                           json.dumps(result.to_dict()).encode("utf-8"))

    def read(self, image_id: str) -> ImageEffort | None:
        """A finished image's result, None when absent or unreadable (it is redone)."""
        try:
            return ImageEffort.from_dict(json.loads(self.path(image_id).read_text("utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def finished(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` whose result file is complete."""
        return {i for i in ids if self.read(i) is not None}


def _row_objects(results: Sequence[ImageEffort]) -> list[tuple[str, ObjectEffort]]:
    return [(r.image_id, o) for r in results for o in r.objects]


def curve(results: Sequence[ImageEffort], max_clicks: int) -> np.ndarray:
    """The mean IoU over objects after ``k`` interactions, ``k = 0..max_clicks``."""
    objs = [o for _, o in _row_objects(results)]
    if not objs:
        return np.zeros(max_clicks + 1)
    table = np.array([[o.ious[min(k, len(o.ious) - 1)] for k in range(max_clicks + 1)]
                      for o in objs])
    return np.asarray(table.mean(axis=0))


def summarize(results: Sequence[ImageEffort], settings: Settings,
              costs: Mapping[str, float]) -> dict[str, Any]:
    """One run's row of the summary table."""
    objs = [o for _, o in _row_objects(results)]
    row: dict[str, Any] = {"model": settings.model_id, "prompt": settings.prompt,
                           "proposals": settings.proposals, "policy": settings.policy or "",
                           "max_clicks": settings.max_clicks, "images": len(results),
                           "objects": len(objs)}
    for t in settings.targets:
        key = f"{t:.2f}"
        nocs = [settings.max_clicks if (n := o.noc.get(key)) is None else n for o in objs]
        pct = round(t * 100)
        row[f"NoC@{pct}"] = float(np.mean(nocs)) if nocs else 0.0
        row[f"failures@{pct}"] = sum(o.noc.get(key) is None for o in objs)
    cur = curve(results, settings.max_clicks)
    for k in CURVE_POINTS:
        if k <= settings.max_clicks:
            row[f"mIoU@{k}"] = float(cur[k])
    row["interactions"] = sum(o.interactions for o in objs)
    row["decisions"] = sum(r.accepted + r.rejected for r in results)
    row["accepted"] = sum(r.accepted for r in results)
    secs = [image_seconds(r, costs) for r in results]
    row["seconds"] = float(sum(secs))
    row["seconds_per_image"] = float(np.mean(secs)) if secs else 0.0
    decodes = sum(r.decodes for r in results)
    row["decode_ms"] = sum(r.decode_ms for r in results) / decodes if decodes else 0.0
    return row


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v
                             for k, v in r.items()})
    return buf.getvalue()


def write_run_tables(store: RunStore, results: Sequence[ImageEffort],
                     costs: Mapping[str, float]) -> dict[str, Any]:
    """Write the run's CSV files and ``summary.json``; return its summary row."""
    s = store.settings
    keys = [f"{t:.2f}" for t in s.targets]
    objects = []
    for image_id, o in _row_objects(results):
        row: dict[str, Any] = {"image": image_id, "object": o.object_id, "class": o.class_id,
                               "area": o.area, "source": o.source}
        for key in keys:
            row[f"NoC@{round(float(key) * 100)}"] = ("" if o.noc.get(key) is None
                                                     else o.noc[key])
        row.update({"interactions": o.interactions, "points": o.points, "boxes": o.boxes,
                    "scribbles": o.scribbles, "class_choices": o.class_choices,
                    "final_iou": o.final_iou, "failed": int(o.noc.get(keys[-1]) is None),
                    "seconds": object_seconds(o, costs)})
        objects.append(row)
    images = [{"image": r.image_id, "objects": len(r.objects),
               "interactions": sum(o.interactions for o in r.objects),
               "failures": sum(o.noc.get(keys[-1]) is None for o in r.objects),
               "accepted": r.accepted, "rejected": r.rejected,
               "mean_iou": float(np.mean([o.final_iou for o in r.objects])) if r.objects
               else 1.0, "seconds": image_seconds(r, costs)} for r in results]
    cur = curve(results, s.max_clicks)
    summary = summarize(results, s, costs)
    atomic_write_text(store.folder / "objects.csv", _csv(objects))
    atomic_write_text(store.folder / "images.csv", _csv(images))
    atomic_write_text(store.folder / "curve.csv", _csv(
        [{"interactions": k, "mIoU": float(v)} for k, v in enumerate(cur)]))
    atomic_write_text(store.folder / "summary.json", json.dumps(
        {"summary": summary, "curve": cur.tolist(), "costs": dict(costs)}, indent=2))
    return summary


def collect_runs(out: str | os.PathLike[str], costs: Mapping[str, float]
                 ) -> list[tuple[str, dict[str, Any], np.ndarray]]:
    """Every run under ``OUT/runs``: ``(name, summary row, curve)``, recomputed with ``costs``."""
    found = []
    for folder in sorted((Path(out) / "runs").glob("*/run.json")):
        try:
            info = json.loads(folder.read_text("utf-8"))
            data = info["settings"]
            settings = Settings(**{**data, "targets": tuple(data["targets"])})
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a foreign or half-written folder is not a run
        store = RunStore(out, settings)
        results = [r for p in sorted(store.images.glob("*.json"))
                   if (r := store.read(p.stem)) is not None]
        if results:
            found.append((folder.parent.name, summarize(results, settings, costs),
                          curve(results, settings.max_clicks)))
    return found


def write_summary(out: str | os.PathLike[str], costs: Mapping[str, float]) -> list[dict[str, Any]]:
    """Write ``OUT/summary.csv``, ``OUT/summary.md`` and ``OUT/curve.png`` over all runs."""
    runs = collect_runs(out, costs)
    rows = [{"run": name, **row} for name, row, _ in runs]
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    rows = [{k: r.get(k, "") for k in columns} for r in rows]
    out = Path(out)
    atomic_write_text(out / "summary.csv", _csv(rows))
    atomic_write_text(out / "summary.md", markdown_table(rows, costs))
    if runs:
        from napari_samlabel.annotate.effort.plot import plot_curves

        atomic_write_bytes(out / "curve.png", plot_curves(
            [(f"{r['model'].split(':')[0]} {r['prompt']} {r['proposals']}", c)
             for (_, r, c) in runs]))
    return rows


_MD_COLUMNS = ("model", "prompt", "proposals", "images", "objects", "NoC@85", "NoC@90",
               "failures@90", "mIoU@1", "mIoU@3", "mIoU@5", "decisions", "seconds_per_image",
               "decode_ms")


def markdown_table(rows: Sequence[Mapping[str, Any]], costs: Mapping[str, float]) -> str:
    """The runs side by side as a Markdown table, with the cost model under it."""
    cols = [c for c in _MD_COLUMNS if any(c in r for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.2f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    model = ", ".join(f"{k} {v:g} s" for k, v in costs.items())
    return "\n".join(lines) + f"\n\nCost model: {model}.\n"
