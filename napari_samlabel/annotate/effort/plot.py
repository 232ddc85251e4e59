"""The mIoU-against-interactions plot, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def plot_curves(curves: Sequence[tuple[str, np.ndarray]], size: tuple[int, int] = (720, 480)
                ) -> bytes:
    """PNG bytes of one line per ``(label, mIoU after k interactions)``; y from 0 to 1."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = size
    left, right, top, bottom = 60, 20, 30, 50 + 16 * len(curves)
    height = h + 16 * len(curves)
    img = Image.new("RGB", (w, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    x_max = max((len(c) - 1 for _, c in curves), default=1) or 1
    pw, ph = w - left - right, height - top - bottom

    def xy(k: float, v: float) -> tuple[float, float]:
        return left + pw * k / x_max, top + ph * (1.0 - v)

    for i in range(11):  # grid and y labels every 0.1
        y = top + ph * (1 - i / 10)
        draw.line([(left, y), (left + pw, y)], fill=(225, 225, 225))
        draw.text((left - 35, y - 6), f"{i / 10:.1f}", fill="black", font=font)
    step = max(1, x_max // 10)
    for k in range(0, x_max + 1, step):
        x = xy(k, 0)[0]
        draw.line([(x, top + ph), (x, top + ph + 4)], fill="black")
        draw.text((x - 4, top + ph + 6), str(k), fill="black", font=font)
    draw.rectangle([left, top, left + pw, top + ph], outline="black")
    draw.text((left, 8), "mIoU after k interactions", fill="black", font=font)
    draw.text((left + pw // 2 - 30, top + ph + 20), "interactions", fill="black", font=font)
    for n, (label, values) in enumerate(curves):
        colour = _COLOURS[n % len(_COLOURS)]
        pts = [xy(k, float(np.clip(v, 0, 1))) for k, v in enumerate(values)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for x, y in pts:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        ly = top + ph + 38 + 16 * n
        draw.line([(left, ly + 6), (left + 20, ly + 6)], fill=colour, width=3)
        draw.text((left + 26, ly), label, fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
