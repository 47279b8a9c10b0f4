"""Result size and encoding time of a 1024x1024 image as PNG, WebP and JPEG.

PNG as ComfyUI's SaveImage writes it (compress_level 4); WebP and JPEG as the
worker converts still images (`output.format`, default quality 90); then base64,
as the result carries it. The picture is a smooth gradient with shapes and fine
noise, closer to a generated image than flat colour or pure noise.
"""

from __future__ import annotations

import base64
import io
import statistics
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

QUALITY = 90  # the documented default of output.quality


@dataclass
class Encoded:
    format: str
    settings: str
    bytes: int
    base64_bytes: int
    encode_ms: float
    base64_ms: float


def test_image(size: int = 1024) -> Image.Image:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([np.sin(3 * x + 1) * 0.5 + 0.5, y, (x + y) / 2], axis=-1) * 200
    image = Image.fromarray((rgb + rng.normal(0, 6, rgb.shape)).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        box = [int(v) for v in rng.integers(0, size, 4)]
        draw.ellipse([min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])],
                     fill=tuple(int(v) for v in rng.integers(0, 255, 3)))  # fmt: skip
    return image


def encode(image: Image.Image, pil_format: str, runs: int, **options: int) -> tuple[bytes, float]:
    times = []
    for _ in range(runs):
        buffer = io.BytesIO()
        started = time.perf_counter()
        image.save(buffer, format=pil_format, **options)
        times.append(time.perf_counter() - started)
    return buffer.getvalue(), statistics.median(times) * 1000


def measure(runs: int = 5) -> list[Encoded]:
    image = test_image()
    results = []
    for name, pil_format, options, settings in (
        ("png", "PNG", {"compress_level": 4}, "compress_level 4 (ComfyUI's SaveImage)"),
        ("webp", "WEBP", {"quality": QUALITY}, f"quality {QUALITY}"),
        ("jpeg", "JPEG", {"quality": QUALITY}, f"quality {QUALITY}"),
    ):
        data, encode_ms = encode(image, pil_format, runs, **options)
        started = time.perf_counter()
        encoded = base64.b64encode(data)
        base64_ms = (time.perf_counter() - started) * 1000
        results.append(Encoded(name, settings, len(data), len(encoded), encode_ms, base64_ms))
    return results
