#!/usr/bin/env python3
"""Renders assets/icon.svg into the icon files each platform needs.

    python3 -m pip install cairosvg==2.8.2 pillow==13.0.0
    python3 tools/make_icons.py

Writes assets/icons/<size>.png (16…512; 256 is the window icon), modeldesk.ico (Windows) and
modeldesk.icns (macOS). Rerun after editing the SVG and commit the results.
"""
import io
import os

import cairosvg
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SOURCE = os.path.join(ROOT, "assets", "icon.svg")
OUT = os.path.join(ROOT, "assets", "icons")
SIZES = [16, 24, 32, 48, 64, 128, 256, 512]


def render(size):
    png = cairosvg.svg2png(url=SOURCE, output_width=size, output_height=size)
    return Image.open(io.BytesIO(png)).convert("RGBA")


def main():
    os.makedirs(OUT, exist_ok=True)
    images = {size: render(size) for size in SIZES}
    for size, image in images.items():
        image.save(os.path.join(OUT, f"{size}.png"), optimize=True)
    images[256].save(os.path.join(OUT, "modeldesk.ico"), sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    images[512].save(os.path.join(OUT, "modeldesk.icns"))
    print("wrote", ", ".join(sorted(os.listdir(OUT))))


if __name__ == "__main__":
    main()
