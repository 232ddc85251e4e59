"""An HTML report of the worst images: overlay thumbnails with their signals and flags.

``OUT/report.html`` states what the ranking uses (ground truth or the signals), shows a
histogram of all the images' scores (inline SVG, the last shown image's score marked) and
lists the ``top`` worst images in rank order, after an overview table of them. Each shows
its score, an overlay thumbnail from ``OUT/thumbnails/`` that links to a full-size one in
``OUT/thumbnails/full/`` (the image, each object's mask in its own colour with its outline
and its object id, and the prompts: positive points and scribbles green, negative ones red,
boxes as rectangles in the object's colour; where a positive and a negative prompt fall on
the same spot the positive one shows; ground-truth objects outlined in white when given, each
instance apart when the ground truth has instances), the main reason (the strongest evidence
of what is wrong) in words,
its flags and a table of its objects' signals (values past their threshold in red, the main
reason's cell outlined, counts as integers, fractions as percentages). The page is static
and self-contained apart from the images, so it opens from disk in any browser.

Rendering uses numpy and Pillow only. The thumbnails are written into a fresh folder that
replaces ``thumbnails/`` when complete, and ``report.html`` is written last, atomically.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import numpy as np
from PIL import Image, ImageDraw

from napari_samlabel.core.classes import BACKGROUND, VOID, ClassTable, as_class_table
from napari_samlabel.core.fsutil import atomic_save, atomic_write_text
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.core.prompts import Box, Point, Scribble
from napari_samlabel.curate.assessment import ImageAssessment
from napari_samlabel.curate.histogram import score_histogram_svg
from napari_samlabel.curate.matching import GroundTruth
from napari_samlabel.curate.queue import (
    FAILURES_TXT,
    IMAGE_SCORE_RULE,
    QUEUE_CSV,
    QUEUE_JSON,
    RANKING_TEXT,
    class_name,
    ranking_basis,
    summary,
)
from napari_samlabel.curate.signals import (
    BADNESS_SIGNAL,
    FLAG_LEVEL,
    FLAGS,
    SIGNAL_SPECS,
    SIGNAL_TEXT,
)

REPORT_HTML = "report.html"
THUMBNAILS = "thumbnails"
#: Sub-folder of ``thumbnails/`` with the full-size overlays the thumbnails link to.
FULL = "full"
#: Longest side of a full-size overlay (larger images are scaled down to it).
FULL_SIDE = 1600
#: Objects listed per image in the report (worst first); the rest are in queue.csv.
MAX_TABLE_ROWS = 25
POSITIVE = (40, 220, 60)
GT_OUTLINE = (255, 255, 255)
NEGATIVE = (235, 40, 40)
#: Distinct object colours (Okabe-Ito and Tableau hues); object k gets colour k mod 10.
OBJECT_COLOURS = np.array([
    (0, 114, 178), (230, 159, 0), (204, 121, 167), (86, 180, 233), (213, 94, 0),
    (0, 158, 115), (240, 228, 66), (148, 103, 189), (140, 86, 75), (127, 127, 127),
], dtype=np.float32)

#: ``load(image_id) -> (RGB uint8 image, objects)``, called for the images in the report.
Loader = Callable[[str], tuple[np.ndarray, Sequence[AnnotatedObject]]]


def object_colour(object_id: int) -> tuple[int, int, int]:
    """Display colour of an object (by id, so the table and the picture match)."""
    c = OBJECT_COLOURS[(int(object_id) - 1) % len(OBJECT_COLOURS)]
    return int(c[0]), int(c[1]), int(c[2])


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Downscale a mask by area averaging; a pixel is kept when a quarter is covered.

    The low cut keeps thin and tiny objects visible in a small thumbnail.
    """
    im = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255)
    return np.asarray(im.resize(size, Image.Resampling.BOX)) >= 64


def render_overlay(image: np.ndarray, objects: Sequence[AnnotatedObject],
                   max_side: int = 320, alpha: float = 0.45,
                   gt: np.ndarray | None = None,
                   gt_instance: np.ndarray | None = None) -> np.ndarray:
    """Render the overlay thumbnail of one image.

    Parameters
    ----------
    image : numpy.ndarray
        ``H x W x 3`` ``uint8`` RGB (a grey ``H x W`` image is accepted).
    objects : sequence of AnnotatedObject
        Objects to draw: masks filled with ``alpha`` and outlined, the object id at the
        mask's centre, and the prompts.
    max_side : int
        Longest side of the thumbnail; smaller images keep their size.
    alpha : float
        Opacity of the mask fill.
    gt : numpy.ndarray, optional
        ``H x W`` ground-truth class map; the outlines of its objects (classes other than
        background and void) are drawn in white.
    gt_instance : numpy.ndarray, optional
        ``H x W`` ground-truth instance map (0 none, 255 void); when given, each instance
        is outlined instead, so that touching objects of one class show apart.

    Returns
    -------
    numpy.ndarray
        ``h x w x 3`` ``uint8`` RGB thumbnail.
    """
    from scipy import ndimage as ndi

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"image must be H x W x 3 RGB, got shape {img.shape}")
    img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL: (width, height)
    base = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS),
                      dtype=np.float32)
    masks = []
    for obj in objects:
        m = _resize_mask(obj.mask, size)
        colour = np.array(object_colour(obj.object_id), dtype=np.float32)
        base[m] = (1.0 - alpha) * base[m] + alpha * colour
        masks.append((obj, m, colour))
    for _obj, m, colour in masks:
        edge = m & ~ndi.binary_erosion(m)
        base[edge] = colour
    outlined = gt_instance if gt_instance is not None else gt
    if outlined is not None:
        from skimage.segmentation import find_boundaries

        labels = np.asarray(outlined)
        if labels.shape != (h, w):
            raise ValueError(f"ground truth is {labels.shape} but the image is {(h, w)} (HxW)")
        # 0 (background / no instance) and 255 (void) are not objects in either map.
        small = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize(
            size, Image.Resampling.NEAREST))
        fg = (small != BACKGROUND) & (small != VOID)
        base[find_boundaries(small, mode="inner") & fg] = GT_OUTLINE
    out = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)

    def xy(rc: Sequence[float]) -> tuple[float, float]:
        return (float(rc[1]) * scale, float(rc[0]) * scale)

    for obj, _m, _colour in masks:
        rgb = object_colour(obj.object_id)
        for p in obj.prompts:
            if isinstance(p, Box):
                (x0, y0), (x1, y1) = xy(p.top_left), xy(p.bottom_right)
                draw.rectangle((x0, y0, x1, y1), outline=rgb, width=2)
    # Negatives first, positives over them: a pseudo-label unit's negatives are often the
    # other classes' clicks, which must still show as those classes' positive clicks.
    for positive in (False, True):
        fill = POSITIVE if positive else NEGATIVE
        for obj, _m, _colour in masks:
            for p in obj.prompts:
                if isinstance(p, Scribble) and p.positive == positive:
                    pts = [xy(v) for v in p.path]
                    if len(pts) > 1:
                        draw.line(pts, fill=fill, width=max(2, round(p.width * scale)))
                    else:
                        draw.point(pts, fill=fill)
    for obj, m, _colour in masks:
        if m.any():
            rows, cols = np.nonzero(m)
            cy, cx = float(rows.mean()), float(cols.mean())
            label = str(obj.object_id)
            left, top, right, bottom = draw.textbbox((0, 0), label)
            tx, ty = cx - (right - left) / 2, cy - (bottom - top) / 2
            draw.text((tx + 1, ty + 1), label, fill=(0, 0, 0))
            draw.text((tx, ty), label, fill=(255, 255, 255))
    for positive in (False, True):  # points on top of everything else
        fill = POSITIVE if positive else NEGATIVE
        for obj, _m, _colour in masks:
            for p in obj.prompts:
                if isinstance(p, Point) and p.positive == positive:
                    x, y = xy(p.rc)
                    draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=(255, 255, 255))
                    draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=fill)
    return np.asarray(out)


def _png_writer(rgb: np.ndarray) -> Callable[[IO[bytes]], None]:
    """A writer for :func:`napari_samlabel.core.fsutil.atomic_save` that saves ``rgb`` as PNG."""
    im = Image.fromarray(rgb)

    def write(fh: IO[bytes]) -> None:
        im.save(fh, format="PNG")

    return write


def thumbnail_name(rank: int, image_id: str) -> str:
    """File name of the thumbnail of the image at ``rank`` (safe characters only)."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", image_id)[:80]
    return f"{rank:04d}_{safe}.png"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
header p, header details { max-width: 62em; }
.item { display: flex; gap: 1.2em; border-top: 1px solid #ccc; padding: 1em 0; }
.item img { border: 1px solid #999; image-rendering: auto; }
.item h2 { margin: 0 0 .3em 0; font-size: 1.1em; }
.reason { margin: .2em 0 .4em 0; }
.flag { display: inline-block; background: #fde2e1; color: #8a1c1c; border-radius: 3px;
        padding: 0 .4em; margin: 0 .2em .2em 0; font-size: .85em; }
.ok { color: #1b6e2a; }
table { border-collapse: collapse; font-size: .85em; }
td, th { border: 1px solid #ddd; padding: .15em .5em; text-align: right; }
th { background: #f3f3f3; }
th[title] { text-decoration: underline dotted; cursor: help; }
td.l, th.l { text-align: left; }
td.flags { min-width: 11em; }
td.bad { background: #fde2e1; color: #8a1c1c; font-weight: 600; }
td.main { outline: 2px solid #8a1c1c; outline-offset: -2px; }
table.overview td { vertical-align: top; }
.swatch { display: inline-block; width: .9em; height: .9em; vertical-align: middle; }
.err { color: #a00; }
.small { font-size: .85em; color: #555; }
figure.hist { margin: .6em 0; }
"""

#: Object table columns: signal key, heading. Headings carry the meaning as a tooltip.
_COLUMNS = (("predicted_iou", "pred. IoU"), ("stability", "stability"),
            ("disagreement", "disagree"), ("iou_spread", "IoU spread"),
            ("positive_outside", "pos. out"), ("negative_inside", "neg. in"),
            ("box_fill", "box fill"), ("box_gap", "box gap"), ("outside_box", "out of box"),
            ("components", "pieces"), ("fragment_fraction", "stray"),
            ("hole_fraction", "holes"), ("overlap_lost", "lost"), ("area_fraction", "area"),
            ("area", "px"), ("gt_iou", "GT IoU"), ("gt_merge", "GT merge"))
#: Tooltips of signals that are reported but not scored, or not badness keys.
_COLUMN_TEXT = {
    "iou_spread": "max - min of SAM's predicted IoUs of its three candidates (not scored)",
    "components": "8-connected pieces", "area": "mask area in pixels",
    "area_fraction": "mask area, share of the image",
}
#: Shown as percentages / as whole numbers; everything else with two decimals.
_PERCENT = frozenset({"area_fraction", "positive_outside", "negative_inside", "box_fill",
                      "box_gap", "outside_box", "fragment_fraction", "hole_fraction",
                      "overlap_lost", "gt_merge"})
_COUNTS = frozenset({"area", "components", "holes", "objects", "gt_objects", "gt_missed"})
#: The signal cell that explains a flag.
_FLAG_CELL = {spec.flag: name for name, spec in SIGNAL_SPECS.items()}
_FLAG_CELL.update({"tiny": "area_fraction", "huge": "area_fraction",
                   "gt_duplicate": "gt_iou", "empty": "area"})


def percent(value: float) -> str:
    """A fraction as a percentage with two significant digits below 1 % (never ``2e-05``)."""
    x = 100.0 * float(value)
    if x == 0:
        return "0%"
    if abs(x) >= 10:
        return f"{x:.0f}%"
    if abs(x) >= 1:
        return f"{x:.1f}%"
    digits = 1 - math.floor(math.log10(abs(x)))
    return f"{x:.{digits}f}%"


def format_value(name: str, value: float | None) -> str:
    """How the report shows the raw value of signal ``name``."""
    if value is None or not math.isfinite(float(value)):
        return "\u2013"
    if name in _PERCENT:
        return percent(value)
    if name in _COUNTS:
        return f"{round(float(value)):,}"
    return f"{float(value):.2f}"


def _histogram(ranked: Sequence[ImageAssessment], shown: int) -> str:
    """The score histogram with its caption (HTML), empty without images."""
    if not ranked:
        return ""
    cut = ranked[shown - 1].score if 0 < shown < len(ranked) else None
    svg = score_histogram_svg([a.score for a in ranked], [bool(a.flags) for a in ranked], cut)
    where = (f"; the dashed line is the score of the last image shown here (#{shown}, "
             f"{cut:.2f})" if cut is not None else "")
    return (f'<figure class="hist">{svg}<figcaption class="small">Image scores of all '
            f"{len(ranked)} images (0 = looks right, 1 = all wrong), flagged images in red"
            f"{where}. Review from the right; where the bars thin out is a natural place to "
            "stop.</figcaption></figure>")


def _flag_chips(flags: Sequence[str]) -> str:
    return "".join(f'<span class="flag" title="{html.escape(FLAGS.get(f, f))}">'
                   f"{html.escape(f)}</span>" for f in flags)


def describe_reason(reason: Mapping[str, Any] | None, a: ImageAssessment | None = None,
                    classes: ClassTable | None = None) -> str:
    """A main reason in words (plain text): which object, which signal, its value, its share.

    ``reason`` is an :attr:`ImageAssessment.main_reason` or
    :attr:`ObjectAssessment.main_reason`; ``a`` and ``classes`` add the object's class.
    """
    if not reason:
        return "nothing suspicious"
    name = str(reason["signal"])
    text = SIGNAL_TEXT.get(name, name)
    value = reason.get("value")
    if name == "gt_missed":
        total = a.signals.get("gt_objects") if a is not None else None
        text = (f"{format_value('gt_missed', value)} of "
                f"{format_value('gt_objects', total)} ground-truth objects matched by no mask"
                if total else text)
    elif name == "area" and value is not None:
        text = f"area {percent(value)} of the image"
    elif name not in ("flagged", "no_objects", "empty", "gt_class") and value is not None:
        text += f" {format_value(BADNESS_SIGNAL.get(name, name), value)}"
    oid = reason.get("object_id")
    contribution = float(reason.get("contribution") or 0.0)
    if oid is None:
        return text if name == "flagged" else f"{text} (weighs {contribution:.2f})"
    who = f"object {oid}"
    obj = next((o for o in a.objects if o.object_id == oid), None) if a else None
    if obj is not None and classes is not None:
        who += f" ({class_name(classes, obj.class_id)})"
    return f"{who}: {text} (adds {contribution:.2f})"


def _object_table(a: ImageAssessment, classes: ClassTable) -> str:
    if not a.objects:
        return "<p>No objects.</p>"
    cols = [(k, t) for k, t in _COLUMNS if any(k in o.signals for o in a.objects)]
    head = "".join(
        f'<th title="{html.escape(_COLUMN_TEXT.get(k) or SIGNAL_TEXT.get(k, k))}">'
        f"{html.escape(t)}</th>" for k, t in cols)
    rows = []
    named = (a.main_reason or {}).get("object_id")
    ordered = sorted(a.objects, key=lambda o: -o.score)
    for o in ordered[:MAX_TABLE_ROWS]:
        r, g, b = object_colour(o.object_id)
        bad_cells = {_FLAG_CELL[f] for f in o.flags if f in _FLAG_CELL}
        # Outline the reason of the objects that matter: flagged ones and the image's worst.
        main = o.main_reason if o.flags or o.object_id == named else None
        main_cell = None if main is None else BADNESS_SIGNAL.get(main["signal"],
                                                                 main["signal"])
        cls_class = ' class="l bad"' if "gt_wrong_class" in o.flags else ' class="l"'
        cells = []
        for k, _ in cols:
            css = " ".join(c for c, on in (("bad", k in bad_cells), ("main", k == main_cell))
                           if on)
            attr = f' class="{css}"' if css else ""
            cells.append(f"<td{attr}>{html.escape(format_value(k, o.signals.get(k)))}</td>")
        rows.append(
            f'<tr><td class="l"><span class="swatch" style="background:rgb({r},{g},{b})">'
            f"</span> {o.object_id}</td><td{cls_class}>"
            f"{html.escape(class_name(classes, o.class_id))}</td>"
            f"<td>{o.score:.2f}</td><td class=\"l flags\">{_flag_chips(o.flags)}</td>"
            + "".join(cells) + "</tr>")
    more = len(ordered) - MAX_TABLE_ROWS
    note = (f"<p>{more} more objects with lower scores: see {QUEUE_CSV}.</p>"
            if more > 0 else "")
    return (f'<table><tr><th class="l">object</th><th class="l">class</th><th>score</th>'
            f'<th class="l">flags</th>{head}</tr>{"".join(rows)}</table>{note}')


def _worst_object_line(a: ImageAssessment, classes: ClassTable) -> str:
    """When an image-level rule set the score, what is wrong with the worst object (HTML)."""
    if not a.main_reason or a.main_reason.get("object_id") is not None or not a.objects:
        return ""
    worst = max(a.objects, key=lambda o: (o.score, -o.object_id))
    if worst.main_reason is None or worst.score < FLAG_LEVEL:
        return ""
    text = describe_reason({"object_id": worst.object_id, **worst.main_reason}, a, classes)
    return f'<br><span class="small">Worst object: {html.escape(text)}</span>'


def _image_facts(a: ImageAssessment) -> str:
    """One line of image-level counts (objects, ground truth)."""
    def count(n: float, what: str) -> str:
        return f"{round(n):,} {what}{'' if round(n) == 1 else 's'}"

    parts = [count(a.signals.get("objects", len(a.objects)), "object")]
    if "gt_objects" in a.signals:
        parts.append(f"ground truth: {count(a.signals['gt_objects'], 'object')}, "
                     f"{round(a.signals.get('gt_missed', 0)):,} missed")
    if "gt_miou" in a.signals:
        parts.append(f"mIoU {a.signals['gt_miou']:.2f}")
    parts.append(f"{a.shape[1]} \u00d7 {a.shape[0]} px")
    return " \u00b7 ".join(parts)


def report_html(ranked: Sequence[ImageAssessment], thumbs: dict[str, str | None],
                classes: ClassTable | Sequence[str] | None = None, top: int = 50,
                title: str = "napari-samlabel curation report",
                errors: dict[str, str] | None = None,
                full: Mapping[str, str] | None = None) -> str:
    """Build the report page.

    Parameters
    ----------
    ranked : sequence of ImageAssessment
        Images in rank order; the first ``top`` are shown.
    thumbs : dict
        ``image_id -> thumbnail path relative to the page`` (None when unavailable).
    classes : ClassTable or list of str, optional
        For class names.
    top : int
        Number of images shown.
    title : str
        Page title.
    errors : dict, optional
        ``image_id -> message`` for images whose thumbnail could not be made.
    full : mapping, optional
        ``image_id -> full-size overlay path``; each thumbnail links to it.
    """
    table = as_class_table(classes)
    errors = errors or {}
    full = full or {}
    shown = list(ranked[:max(0, top)])
    flagged = sum(1 for a in ranked if a.flags)
    items, overview = [], []
    for a in shown:
        src = thumbs.get(a.image_id)
        if src:
            picture = (f'<img src="{html.escape(quote(src))}" '
                       f'alt="overlay of {html.escape(a.image_id)}">')
            if a.image_id in full:
                picture = (f'<a href="{html.escape(quote(full[a.image_id]))}" '
                           f'title="full-size overlay">{picture}</a>')
        else:
            msg = errors.get(a.image_id, "no thumbnail")
            picture = f'<p class="err">{html.escape(msg)}</p>'
        status = f" &middot; {html.escape(a.status)}" if a.status else ""
        reason = html.escape(describe_reason(a.main_reason, a, table))
        chips = _flag_chips(a.flags) or '<span class="ok">no flags</span>'
        worst = _worst_object_line(a, table)
        items.append(
            f'<section class="item" id="rank-{a.rank}" data-image-id="{html.escape(a.image_id)}">'
            f"<div>{picture}</div><div><h2>#{a.rank} &middot; {html.escape(a.image_id)} "
            f"&middot; score {a.score:.2f}{status}</h2>"
            f'<p class="reason">Main reason: <b>{reason}</b>{worst}</p>'
            f'<p class="small">{html.escape(_image_facts(a))}</p>'
            f"<div>{chips}</div>{_object_table(a, table)}</div></section>")
        overview.append(
            f'<tr><td><a href="#rank-{a.rank}">{a.rank}</a></td>'
            f'<td class="l"><a href="#rank-{a.rank}">{html.escape(a.image_id)}</a></td>'
            f"<td>{a.score:.2f}</td><td class=\"l\">{reason}</td>"
            f'<td class="l">{_flag_chips(a.flags)}</td></tr>')
    legend = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
                     for k, v in FLAGS.items())
    counts = summary(ranked)["images_per_flag"]
    per_flag = ", ".join(f'<span class="flag" title="{html.escape(FLAGS.get(k, k))}">'
                         f"{html.escape(k)}</span> {n}" for k, n in counts.items())
    per_flag_line = f"<p>Images per flag: {per_flag}</p>" if counts else ""
    overview_table = (
        '<details open><summary>The images below</summary><table class="overview"><tr>'
        '<th>#</th><th class="l">image</th><th>score</th><th class="l">main reason</th>'
        f'<th class="l">flags</th></tr>{"".join(overview)}</table></details>'
        if overview else "")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1>"
        f"<p>{len(ranked)} images ranked worst first, {flagged} with at least one flag "
        f'(<a href="{FAILURES_TXT}">{FAILURES_TXT}</a>); the {len(shown)} worst are shown. '
        f'Full lists: <a href="{QUEUE_CSV}">{QUEUE_CSV}</a>, '
        f'<a href="{QUEUE_JSON}">{QUEUE_JSON}</a>.</p>'
        f'<p class="ranking">{html.escape(RANKING_TEXT[ranking_basis(ranked)])}</p>'
        f"{_histogram(ranked, len(shown))}"
        f"{per_flag_line}<details><summary>How to read this report</summary><ul>"
        f"<li>Image score: {html.escape(IMAGE_SCORE_RULE)}.</li>"
        f"<li>Object score: an object scores {FLAG_LEVEL:g} or more exactly when it has a "
        "flag that explains it.</li>"
        "<li>Main reason: the strongest evidence of what is wrong: the signal that adds most "
        "to the worst object's score, or an image-level cause (missed ground-truth objects, "
        "no objects, an annotator's flag) that outweighs it. In the object tables its "
        "cell is outlined (for flagged objects and the object that sets the image's score), "
        "and values past their flag's threshold are red; hover a column heading for its "
        "meaning.</li>"
        "<li>Thumbnails (click for full size): each object's mask in its own colour with its "
        "id; prompts: positive green, negative red, boxes in the object's colour; ground "
        "truth, when given, outlined in white (each instance when it has instances).</li>"
        "</ul></details>"
        f"<details><summary>What the flags mean</summary><ul>{legend}</ul></details>"
        f"{overview_table}</header>"
        f"<main>{''.join(items)}</main></body></html>\n")


def write_report(
    out_dir: str | os.PathLike[str],
    ranked: Sequence[ImageAssessment],
    load: Loader,
    classes: ClassTable | Sequence[str] | None = None,
    top: int = 50,
    max_side: int = 320,
    title: str = "napari-samlabel curation report",
    progress: ProgressCallback = no_progress,
    load_gt: Callable[[str], GroundTruth | np.ndarray | None] | None = None,
    full_side: int = FULL_SIDE,
) -> Path:
    """Render the thumbnails of the ``top`` worst images and write ``report.html``.

    Each thumbnail links to a full-size overlay (``thumbnails/full/``, at most
    ``full_side`` pixels on its longest side).

    An image that cannot be loaded is shown with the error message instead of a thumbnail;
    it does not stop the report.

    Parameters
    ----------
    out_dir : path
        Output folder; ``thumbnails/`` in it is replaced as a whole.
    ranked : sequence of ImageAssessment
        Images in rank order.
    load : callable
        ``load(image_id) -> (image, objects)``.
    classes : ClassTable or list of str, optional
        For class names.
    top : int
        Number of images in the report.
    max_side : int
        Longest thumbnail side in pixels.
    title : str
        Page title.
    progress : callable
        ``progress(done, total, image_id)`` after each thumbnail.
    load_gt : callable, optional
        ``load_gt(image_id) -> GroundTruth, class map or None``: ground-truth outlines for
        the thumbnails (each instance when the ground truth has instances).
    full_side : int
        Longest side of the full-size overlays (0: none).

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = list(ranked[:max(0, top)])
    fresh = Path(tempfile.mkdtemp(prefix=f".{THUMBNAILS}.", dir=out))
    thumbs: dict[str, str | None] = {}
    full: dict[str, str] = {}
    errors: dict[str, str] = {}
    aside: Path | None = None
    try:
        for k, a in enumerate(shown, 1):
            try:
                image, objects = load(a.image_id)
                gt = load_gt(a.image_id) if load_gt is not None else None
                sem, inst = (gt.semantic, gt.instance) if isinstance(gt, GroundTruth) \
                    else (gt, None)
                pictures = {THUMBNAILS: render_overlay(image, objects, max_side=max_side,
                                                       gt=sem, gt_instance=inst)}
                if full_side > 0:
                    pictures[FULL] = render_overlay(image, objects, max_side=full_side,
                                                    gt=sem, gt_instance=inst)
            except (OSError, ValueError) as exc:
                errors[a.image_id] = f"thumbnail unavailable: {exc}"
                thumbs[a.image_id] = None
            else:
                name = thumbnail_name(a.rank or k, a.image_id)
                atomic_save(fresh / name, _png_writer(pictures[THUMBNAILS]))
                thumbs[a.image_id] = f"{THUMBNAILS}/{name}"
                if FULL in pictures:
                    (fresh / FULL).mkdir(exist_ok=True)
                    atomic_save(fresh / FULL / name, _png_writer(pictures[FULL]))
                    full[a.image_id] = f"{THUMBNAILS}/{FULL}/{name}"
            progress(k, len(shown), a.image_id)
        target = out / THUMBNAILS
        if target.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{THUMBNAILS}.old.", dir=out))
            os.replace(target, aside / THUMBNAILS)
        try:
            os.replace(fresh, target)
        except BaseException:
            if aside is not None:  # put the previous thumbnails back
                os.replace(aside / THUMBNAILS, target)
            raise
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    path = out / REPORT_HTML
    atomic_write_text(path, report_html(ranked, thumbs, classes, top, title, errors, full))
    return path


__all__ = [
    "FULL", "FULL_SIDE", "OBJECT_COLOURS", "REPORT_HTML", "THUMBNAILS", "Loader",
    "describe_reason", "format_value", "object_colour", "percent", "render_overlay",
    "report_html", "thumbnail_name", "write_report",
]
