"""A histogram of image scores as inline SVG, for the curation report.

Plain text, no plotting library: the report stays one static page that opens from disk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def score_histogram_svg(scores: Sequence[float], flagged: Sequence[bool],
                        cut: float | None = None, bins: int = 20) -> str:
    """An inline SVG histogram of image scores in ``[0, 1]``, flagged images stacked in red.

    ``cut`` (the score of the last image the report shows) is drawn as a dashed line: the
    reviewer sees how many images lie above it and where the scores thin out.
    """
    w, h, left, bottom, top = 560, 150, 34, 22, 8
    pw, ph = w - left - 8, h - bottom - top
    idx = np.clip((np.asarray(scores, dtype=np.float64) * bins).astype(int), 0, bins - 1)
    flag = np.asarray(flagged, dtype=bool)
    red = np.bincount(idx[flag], minlength=bins) if idx.size else np.zeros(bins, int)
    grey = np.bincount(idx[~flag], minlength=bins) if idx.size else np.zeros(bins, int)
    peak = max(1, int((red + grey).max(initial=0)))
    bw = pw / bins
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'viewBox="0 0 {w} {h}" role="img" aria-label="histogram of image scores">']
    for k in range(bins):
        x = left + k * bw
        y0 = top + ph
        for n, colour, what in ((red[k], "#c0392b", "flagged"),
                                (grey[k], "#9aa5ad", "not flagged")):
            if n:
                bh = ph * n / peak
                y0 -= bh
                parts.append(f'<rect x="{x + 1:.1f}" y="{y0:.1f}" width="{bw - 2:.1f}" '
                             f'height="{bh:.1f}" fill="{colour}"><title>{k / bins:.2f}'
                             f"–{(k + 1) / bins:.2f}: {n} {what}</title></rect>")
    axis = top + ph
    parts.append(f'<line x1="{left}" y1="{axis}" x2="{left + pw}" y2="{axis}" '
                 'stroke="#333"/>')
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + t * pw
        parts.append(f'<line x1="{x:.1f}" y1="{axis}" x2="{x:.1f}" y2="{axis + 4}" '
                     f'stroke="#333"/><text x="{x:.1f}" y="{axis + 16}" font-size="11" '
                     f'text-anchor="middle">{t:g}</text>')
    for value, y in ((peak, top + 9), (0, axis)):
        parts.append(f'<text x="{left - 4}" y="{y}" font-size="11" text-anchor="end">'
                     f"{value}</text>")
    if cut is not None and math.isfinite(cut):
        x = left + float(np.clip(cut, 0.0, 1.0)) * pw
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis}" stroke="#222" '
                     'stroke-dasharray="4 3"><title>the last image shown in this report'
                     "</title></line>")
    parts.append("</svg>")
    return "".join(parts)


__all__ = ["score_histogram_svg"]
