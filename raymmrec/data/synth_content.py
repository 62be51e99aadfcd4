"""Item content of the synthetic catalogue: a PNG image and field-structured text decided by (cluster, style)."""
from __future__ import annotations

import colorsys
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon")
TEXTURES = ("plain", "hstripes", "vstripes", "diagonal", "dots", "checker")
GENERIC_WORDS = ("new", "premium", "quality", "set", "pack", "for", "with", "and", "the", "best", "value",
                 "classic", "edition", "original", "size", "item", "great", "use", "daily", "home")
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass
class Catalogue:
    """What each latent cluster and style looks like and is called."""

    root: str
    shape: np.ndarray          # [C] index into SHAPES
    texture: np.ndarray        # [C] index into TEXTURES
    hue: np.ndarray            # [C] foreground hue in [0, 1)
    bg_hue: np.ndarray         # [C] background hue
    style_scale: np.ndarray    # [C, S] shape size as a share of the canvas
    style_hue: np.ndarray      # [C, S] hue shift of the style
    nouns: list[list[str]]     # per cluster
    adjectives: list[list[str]]
    brands: list[list[str]]
    category: list[str]
    subcategory: list[list[str]]   # per cluster, per style
    desc_words: list[list[str]]
    style_words: list[list[list[str]]]  # per cluster, per style
    all_words: list[str]       # every cluster word, for noise


def _pseudo_words(n: int, rng: np.random.Generator, taken: set[str]) -> list[str]:
    """`n` distinct pronounceable made-up words not in `taken`."""
    out: list[str] = []
    while len(out) < n:
        syl = int(rng.integers(2, 4))
        word = "".join(_CONSONANTS[rng.integers(len(_CONSONANTS))] + _VOWELS[rng.integers(len(_VOWELS))]
                       for _ in range(syl))
        if word not in taken:
            taken.add(word)
            out.append(word)
    return out


def make_catalogue(n_clusters: int, n_styles: int, root: str, rng: np.random.Generator) -> Catalogue:
    """Draw the appearance and vocabulary of every cluster and style."""
    combos = rng.permutation(len(SHAPES) * len(TEXTURES))
    combos = np.resize(combos, n_clusters)
    taken: set[str] = set(GENERIC_WORDS)
    words = lambda n: _pseudo_words(n, rng, taken)  # noqa: E731
    nouns = [words(6) for _ in range(n_clusters)]
    adjectives = [words(4) for _ in range(n_clusters)]
    brands = [[w.capitalize() for w in words(3)] for _ in range(n_clusters)]
    category = [w.capitalize() for w in words(n_clusters)]
    subcategory = [[w.capitalize() for w in words(n_styles)] for _ in range(n_clusters)]
    desc_words = [words(16) for _ in range(n_clusters)]
    style_words = [[words(4) for _ in range(n_styles)] for _ in range(n_clusters)]
    all_words = sorted(taken - set(GENERIC_WORDS))
    return Catalogue(
        root=root,
        shape=combos % len(SHAPES),
        texture=combos // len(SHAPES) % len(TEXTURES),
        hue=(np.arange(n_clusters) / n_clusters + rng.uniform(0, 0.5 / n_clusters, n_clusters)) % 1.0,
        bg_hue=rng.uniform(0, 1, n_clusters),
        style_scale=rng.uniform(0.45, 0.85, (n_clusters, n_styles)),
        style_hue=rng.uniform(-0.06, 0.06, (n_clusters, n_styles)),
        nouns=nouns, adjectives=adjectives, brands=brands, category=category, subcategory=subcategory,
        desc_words=desc_words, style_words=style_words, all_words=all_words,
    )


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "triangle":
        n, radii = 3, [r]
    elif kind in ("square", "diamond"):
        n, radii = 4, [r]
        angle += 0.0 if kind == "diamond" else math.pi / 4
    elif kind == "hexagon":
        n, radii = 6, [r]
    else:  # star
        n, radii = 10, [r, r * 0.45]
    return [(cx + radii[k % len(radii)] * math.cos(angle + 2 * math.pi * k / n),
             cy + radii[k % len(radii)] * math.sin(angle + 2 * math.pi * k / n)) for k in range(n)]


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, angle: float,
                fill: tuple[int, int, int]) -> None:
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(2, int(r / 3)))
    elif kind == "cross":
        w = r / 3
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    else:
        draw.polygon(_polygon(kind, cx, cy, r, angle), fill=fill)


def _draw_texture(draw: ImageDraw.ImageDraw, kind: str, size: int, colour: tuple[int, int, int], step: int) -> None:
    if kind == "hstripes":
        for y in range(0, size, step):
            draw.rectangle((0, y, size, y + step // 2 - 1), fill=colour)
    elif kind == "vstripes":
        for x in range(0, size, step):
            draw.rectangle((x, 0, x + step // 2 - 1, size), fill=colour)
    elif kind == "diagonal":
        for d in range(-size, size, step):
            draw.line((d, 0, d + size, size), fill=colour, width=max(1, step // 3))
    elif kind == "dots":
        for y in range(step // 2, size, step):
            for x in range(step // 2, size, step):
                draw.ellipse((x - 1, y - 1, x + 1, y + 1), fill=colour)
    elif kind == "checker":
        for y in range(0, size, step):
            for x in range((y // step % 2) * step, size, 2 * step):
                draw.rectangle((x, y, x + step - 1, y + step - 1), fill=colour)


def render_image(cat: Catalogue, cluster: int, style: int, noise: float, rng: np.random.Generator,
                 size: int = 64) -> bytes:
    """A PNG of the cluster's shape, colours and texture, in the style's size and shade, with per-item noise."""
    bg = _rgb(cat.bg_hue[cluster] + rng.normal(0, 0.02), 0.25, 0.92 + rng.normal(0, 0.03))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    tex = _rgb(cat.bg_hue[cluster], 0.45, 0.7)
    _draw_texture(draw, TEXTURES[cat.texture[cluster]], size, tex, step=max(4, size // 8))
    hue = cat.hue[cluster] + cat.style_hue[cluster, style] + rng.normal(0, 0.02 + 0.05 * noise)
    fg = _rgb(hue, 0.8 + rng.normal(0, 0.05), 0.85 + rng.normal(0, 0.05))
    jitter = size * 0.08
    cx, cy = size / 2 + rng.normal(0, jitter), size / 2 + rng.normal(0, jitter)
    r = size / 2 * cat.style_scale[cluster, style] * (1 + rng.normal(0, 0.05))
    _draw_shape(draw, SHAPES[cat.shape[cluster]], cx, cy, r, float(rng.uniform(0, 2 * math.pi)), fg)
    if rng.random() < noise:
        # A distractor: a small random shape in a random colour.
        _draw_shape(draw, SHAPES[rng.integers(len(SHAPES))], rng.uniform(0, size), rng.uniform(0, size),
                    size * 0.12, float(rng.uniform(0, 2 * math.pi)), _rgb(rng.random(), 0.9, 0.8))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _noisy(words: list[str], cat: Catalogue, noise: float, rng: np.random.Generator) -> list[str]:
    """Replace each word, with probability `noise`, by a word of a random cluster."""
    flips = rng.random(len(words)) < noise
    return [cat.all_words[rng.integers(len(cat.all_words))] if f else w for w, f in zip(words, flips)]


def _pick(words: list[str], n: int, rng: np.random.Generator) -> list[str]:
    return [words[i] for i in rng.integers(len(words), size=n)]


def item_text(cat: Catalogue, cluster: int, style: int, noise: float,
              rng: np.random.Generator) -> tuple[str, str | None, list[str], str | None]:
    """(title, brand, categories, description) from the cluster's and style's vocabularies, with noise."""
    brands = cat.brands[cluster]
    if rng.random() < 0.05:
        brand = None
    elif rng.random() < noise:
        other = int(rng.integers(len(cat.brands)))
        brand = cat.brands[other][rng.integers(3)]
    else:
        brand = brands[rng.integers(len(brands))]
    title_words = (_pick(cat.adjectives[cluster], 1, rng) + _pick(cat.style_words[cluster][style], 1, rng)
                   + _pick(cat.nouns[cluster], 2, rng) + _pick(list(GENERIC_WORDS), 1, rng))
    title = " ".join(_noisy(title_words, cat, noise, rng)).capitalize()
    if brand and rng.random() < 0.5:
        title = f"{brand} {title}"
    categories = [cat.root, cat.category[cluster], cat.subcategory[cluster][style]]
    if rng.random() < noise:
        categories = categories[:2]
    description = None
    if rng.random() >= 0.1:
        n = int(rng.integers(10, 26))
        source = rng.random(n)
        words = [cat.desc_words[cluster][rng.integers(16)] if p < 0.55 else
                 cat.style_words[cluster][style][rng.integers(4)] if p < 0.7 else
                 GENERIC_WORDS[rng.integers(len(GENERIC_WORDS))] for p in source]
        description = " ".join(_noisy(words, cat, noise, rng)).capitalize() + "."
    return title, brand, categories, description
