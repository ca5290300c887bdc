"""A contact sheet: sample images of a split with their captions, grounded words highlighted."""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from clipf.world.generate import WorldError, is_world

KIND_COLORS = {
    "shape": (200, 30, 30),
    "color": (20, 80, 200),
    "size": (20, 140, 40),
    "position": (210, 110, 0),
    "background": (130, 40, 160),
    "extra": (0, 130, 130),
}
CONCEPT_KIND_COLORS = {  # the concepts world's grounded kinds
    "name": (200, 30, 30),
    "color": (20, 80, 200),
    "pattern": (210, 110, 0),
    "size": (20, 140, 40),
    "background": (130, 40, 160),
}
_SPAN = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]+")


def _fonts(size: int):
    try:
        from matplotlib import font_manager

        regular = font_manager.findfont("DejaVu Sans", fallback_to_default=True)
        bold = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight="bold"))
        return ImageFont.truetype(regular, size), ImageFont.truetype(bold, size)
    except Exception:  # no matplotlib / font: PIL's own
        font = ImageFont.load_default(size)
        return font, font


def _samples(folder: Path, n: int) -> list[tuple[Image.Image, str, dict]]:
    import json
    import tarfile

    out = []
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            parts: dict[str, dict[str, bytes]] = {}
            order = []
            for m in tar:
                if not m.isfile():
                    continue
                key, _, ext = m.name.rpartition(".")
                if key not in parts:
                    parts[key] = {}
                    order.append(key)
                parts[key][ext] = tar.extractfile(m).read()
        for key in order:
            p = parts[key]
            image = next((p[e] for e in ("jpg", "png", "jpeg", "webp") if e in p), None)
            if image is None or "txt" not in p:
                continue
            meta = json.loads(p["json"]) if "json" in p else {}
            out.append((Image.open(io.BytesIO(image)).convert("RGB"), p["txt"].decode("utf-8"), meta))
            if len(out) >= n:
                return out
    return out


def _kind(label: str | None) -> str | None:
    if label is None:
        return None
    return "extra" if label.startswith("extra") else label


def _truth(meta: dict) -> str:
    scene = meta.get("scene")
    if not scene:
        return ""
    o = scene["objects"][0]
    if "concept" in scene:
        pattern = "" if o["pattern"] == "solid" else f" {o['pattern']} ({o['accent']})"
        return f"{scene['concept']}: {o['size']} {o['color']}{pattern} {o['shape']} | {scene['background']}"
    more = len(scene["objects"]) - 1
    extra = f" +{more}" if more else ""
    return f"{o['size']} {o['color']} {o['shape']}, {o['position']} | {scene['background']}{extra}"


def contact_sheet(
    path: str | Path,
    out: str | Path | None = None,
    n: int = 16,
    cols: int = 4,
    split: str = "train",
    cell: int = 320,
) -> Path:
    """Draw ``n`` samples of ``path`` (a world: its ``split``; or a folder of shards) in a grid, each
    image (upscaled, nearest) over its caption with grounded words in bold and coloured by kind; the
    scene's ground truth in grey below. Saved as PNG to ``out`` (default ``figures/world_contact_sheet.png``)."""
    path = Path(path)
    folder = path / split if is_world(path) else path
    if not folder.is_dir():
        raise WorldError(f"{folder}: no such split folder")
    samples = _samples(folder, n)
    if not samples:
        raise WorldError(f"{folder}: no samples")
    out = Path(out or "figures/world_contact_sheet.png")
    font, bold = _fonts(13)
    small, _ = _fonts(11)
    pad, img_side, text_h = 10, cell - 20, 150
    rows = -(-len(samples) // cols)
    legend_h = 30
    sheet = Image.new("RGB", (cols * cell, legend_h + rows * (cell + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    concepts = any("concept" in (m.get("scene") or {}) for _, _, m in samples)
    kind_colors = CONCEPT_KIND_COLORS if concepts else KIND_COLORS
    x = pad
    draw.text((x, 8), "grounded words:", fill="black", font=font)
    x += draw.textlength("grounded words: ", font=font)
    for kind, rgb in kind_colors.items():
        draw.text((x, 8), kind, fill=rgb, font=bold)
        x += draw.textlength(kind + "   ", font=bold)
    draw.text((x, 8), "(underlined: said wrong)", fill="black", font=font)
    for i, (img, caption, meta) in enumerate(samples):
        cx, cy = (i % cols) * cell, legend_h + (i // cols) * (cell + text_h)
        sheet.paste(img.resize((img_side, img_side), Image.NEAREST), (cx + pad, cy + pad))
        words = meta.get("words") or []
        grounded = meta.get("grounded") or [None] * len(words)
        wrong = set(meta.get("wrong") or [])
        spans = list(_SPAN.finditer(caption))
        aligned = len(spans) == len(words)
        x, y = cx + pad, cy + cell
        line_h, right = 17, cx + cell - pad
        for j, m in enumerate(spans):
            token = m.group()
            kind = _kind(grounded[j]) if aligned else None
            f = bold if kind else font
            space = m.start() > 0 and caption[m.start() - 1].isspace()
            w = draw.textlength(token, font=f)
            sw = draw.textlength(" ", font=font) if space else 0
            if x + sw + w > right and x > cx + pad:
                x, y = cx + pad, y + line_h
                sw = 0
            if y > cy + cell + text_h - 2 * line_h:
                draw.text((x + sw, y), "...", fill="black", font=font)
                break
            x += sw
            draw.text((x, y), token, fill=kind_colors[kind] if kind else (40, 40, 40), font=f)
            if kind and grounded[j] in wrong:
                draw.line((x, y + line_h - 2, x + w, y + line_h - 2), fill=kind_colors[kind], width=2)
            x += w
        draw.text((cx + pad, cy + cell + text_h - line_h - 4), _truth(meta), fill=(120, 120, 120), font=small)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
