"""An HTML report of the worst images: overlay thumbnails with their signals and flags.

``OUT/report.html`` lists the ``top`` worst images in rank order; each shows an overlay
thumbnail from ``OUT/thumbnails/`` (the image, each object's mask in its own colour with its
outline and its object id, and the prompts: positive points and scribbles green, negative
ones red, boxes as rectangles in the object's colour; where a positive and a negative prompt
fall on the same spot the positive one shows; ground-truth objects outlined in white when
given), the image's flags and a table of its
objects' signals. The page is static and self-contained apart from the thumbnails, so it opens
from disk in any browser.

Rendering uses numpy and Pillow only. The thumbnails are written into a fresh folder that
replaces ``thumbnails/`` when complete, and ``report.html`` is written last, atomically.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO
from urllib.parse import quote

import numpy as np
from PIL import Image, ImageDraw

from napari_samlabel.core.classes import BACKGROUND, VOID, ClassTable, as_class_table
from napari_samlabel.core.document import AnnotatedObject
from napari_samlabel.core.fsutil import atomic_save, atomic_write_text
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.core.prompts import Box, Point, Scribble
from napari_samlabel.evaluate.curation import FLAGS, ImageAssessment
from napari_samlabel.evaluate.queue import (
    FAILURES_TXT,
    IMAGE_SCORE_RULE,
    QUEUE_CSV,
    QUEUE_JSON,
    summary,
)

REPORT_HTML = "report.html"
THUMBNAILS = "thumbnails"
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
                   gt: np.ndarray | None = None) -> np.ndarray:
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
    if gt is not None:
        from skimage.segmentation import find_boundaries

        labels = np.asarray(gt)
        if labels.shape != (h, w):
            raise ValueError(f"ground truth is {labels.shape} but the image is {(h, w)} (HxW)")
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
header p { max-width: 60em; }
.item { display: flex; gap: 1.2em; border-top: 1px solid #ccc; padding: 1em 0; }
.item img { border: 1px solid #999; image-rendering: auto; }
.item h2 { margin: 0 0 .3em 0; font-size: 1.1em; }
.flag { display: inline-block; background: #fde2e1; color: #8a1c1c; border-radius: 3px;
        padding: 0 .4em; margin: 0 .2em .2em 0; font-size: .85em; }
table { border-collapse: collapse; font-size: .85em; }
td, th { border: 1px solid #ddd; padding: .15em .5em; text-align: right; }
th { background: #f3f3f3; }
td.l, th.l { text-align: left; }
.swatch { display: inline-block; width: .9em; height: .9em; vertical-align: middle; }
.err { color: #a00; }
"""

_COLUMNS = (("predicted_iou", "pred. IoU"), ("stability", "stability"),
            ("disagreement", "disagree"), ("positive_outside", "pos. out"),
            ("negative_inside", "neg. in"), ("box_fill", "box fill"),
            ("outside_box", "out of box"), ("components", "pieces"),
            ("hole_fraction", "holes"), ("overlap_lost", "lost"), ("area_fraction", "area"),
            ("gt_iou", "GT IoU"))


def _flag_chips(flags: Sequence[str]) -> str:
    return "".join(f'<span class="flag" title="{html.escape(FLAGS.get(f, f))}">'
                   f"{html.escape(f)}</span>" for f in flags)


def _cell(value: float | None) -> str:
    if value is None:
        return "<td>&ndash;</td>"
    return f"<td>{value:.3g}</td>"


def _object_table(a: ImageAssessment, classes: ClassTable) -> str:
    if not a.objects:
        return "<p>No objects.</p>"
    cols = [(k, t) for k, t in _COLUMNS if any(k in o.signals for o in a.objects)]
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in cols)
    rows = []
    ordered = sorted(a.objects, key=lambda o: -o.score)
    for o in ordered[:MAX_TABLE_ROWS]:
        r, g, b = object_colour(o.object_id)
        try:
            name = classes.name(o.class_id)
        except IndexError:
            name = str(o.class_id)
        rows.append(
            f'<tr><td class="l"><span class="swatch" style="background:rgb({r},{g},{b})">'
            f"</span> {o.object_id}</td><td class=\"l\">{html.escape(name)}</td>"
            f"<td>{o.score:.3f}</td><td class=\"l\">{_flag_chips(o.flags)}</td>"
            + "".join(_cell(o.signals.get(k)) for k, _ in cols) + "</tr>")
    more = len(ordered) - MAX_TABLE_ROWS
    note = (f"<p>{more} more objects with lower scores: see {QUEUE_CSV}.</p>"
            if more > 0 else "")
    return (f'<table><tr><th class="l">object</th><th class="l">class</th><th>score</th>'
            f'<th class="l">flags</th>{head}</tr>{"".join(rows)}</table>{note}')


def report_html(ranked: Sequence[ImageAssessment], thumbs: dict[str, str | None],
                classes: ClassTable | Sequence[str] | None = None, top: int = 50,
                title: str = "napari-samlabel curation report",
                errors: dict[str, str] | None = None) -> str:
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
    """
    table = as_class_table(classes)
    errors = errors or {}
    shown = list(ranked[:max(0, top)])
    flagged = sum(1 for a in ranked if a.flags)
    items = []
    for a in shown:
        src = thumbs.get(a.image_id)
        if src:
            picture = (f'<img src="{html.escape(quote(src))}" '
                       f'alt="overlay of {html.escape(a.image_id)}">')
        else:
            msg = errors.get(a.image_id, "no thumbnail")
            picture = f'<p class="err">{html.escape(msg)}</p>'
        status = f" &middot; {html.escape(a.status)}" if a.status else ""
        items.append(
            f'<section class="item" id="rank-{a.rank}" data-image-id="{html.escape(a.image_id)}">'
            f"<div>{picture}</div><div><h2>#{a.rank} &middot; {html.escape(a.image_id)} "
            f"&middot; score {a.score:.3f}{status}</h2>"
            f"<div>{_flag_chips(a.flags) or 'no flags'}</div>{_object_table(a, table)}</div>"
            "</section>")
    legend = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
                     for k, v in FLAGS.items())
    counts = summary(ranked)["images_per_flag"]
    per_flag = ", ".join(f'<span class="flag" title="{html.escape(FLAGS.get(k, k))}">'
                         f"{html.escape(k)}</span> {n}" for k, n in counts.items())
    per_flag_line = f"<p>Images per flag: {per_flag}</p>" if counts else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1>"
        f"<p>{len(ranked)} images ranked worst first, {flagged} with at least one flag; "
        f"the {len(shown)} worst are shown. Image score: {html.escape(IMAGE_SCORE_RULE)}. "
        f'Full lists: <a href="{QUEUE_CSV}">{QUEUE_CSV}</a>, '
        f'<a href="{QUEUE_JSON}">{QUEUE_JSON}</a>, '
        f'<a href="{FAILURES_TXT}">{FAILURES_TXT}</a>. Prompts: positive green, negative red, '
        "boxes in the object's colour; ground truth, when given, outlined in white.</p>"
        f"{per_flag_line}<details><summary>Flags</summary><ul>{legend}</ul></details></header>"
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
    load_gt: Callable[[str], np.ndarray | None] | None = None,
) -> Path:
    """Render the thumbnails of the ``top`` worst images and write ``report.html``.

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
        ``load_gt(image_id) -> class map or None``: ground-truth outlines for the thumbnails.

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
    errors: dict[str, str] = {}
    aside: Path | None = None
    try:
        for k, a in enumerate(shown, 1):
            try:
                image, objects = load(a.image_id)
                gt = load_gt(a.image_id) if load_gt is not None else None
                thumb = render_overlay(image, objects, max_side=max_side, gt=gt)
            except (OSError, ValueError) as exc:
                errors[a.image_id] = f"thumbnail unavailable: {exc}"
                thumbs[a.image_id] = None
            else:
                name = thumbnail_name(a.rank or k, a.image_id)
                atomic_save(fresh / name, _png_writer(thumb))
                thumbs[a.image_id] = f"{THUMBNAILS}/{name}"
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
    atomic_write_text(path, report_html(ranked, thumbs, classes, top, title, errors))
    return path


__all__ = [
    "OBJECT_COLOURS", "REPORT_HTML", "THUMBNAILS", "Loader", "object_colour", "render_overlay",
    "report_html", "thumbnail_name", "write_report",
]
