"""Item content of the synthetic catalogue: a PNG image and field-structured text rendered, with noise, from the
item's cluster, style and continuous attributes (some shown only in the image, some only in the text)."""
from __future__ import annotations

import colorsys
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon")
GENERIC_WORDS = ("new", "premium", "quality", "set", "pack", "for", "with", "and", "the", "best", "value",
                 "classic", "edition", "original", "size", "item", "great", "use", "daily", "home")
# The continuous item attributes (values in [0, 1]) and where each shows: users' preferences are over these.
ATTRIBUTES = ("hue", "size", "shade", "pattern_angle", "material", "age_range", "capacity")
ATTRIBUTE_MODALITY = ("both", "image", "image", "image", "text", "text", "text")
HUE_SPAN = 0.8            # hue = SPAN * value: the ends do not wrap onto each other
COLOUR_NAMES = ("red", "orange", "yellow", "lime", "green", "teal", "blue", "violet")
TEXT_LEVELS = 6           # a text attribute is written as one of this many graded word sets
TEXT_SYNONYMS = 2
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass
class Catalogue:
    """What each cluster and style looks like and is called, and the words of the graded text attributes."""

    root: str
    shape: np.ndarray          # [C] index into SHAPES
    bg_hue: np.ndarray         # [C] background hue
    stripe_step: np.ndarray    # [C] pattern period in pixels at 64 px
    nouns: list[list[str]]     # per cluster
    adjectives: list[list[str]]
    brands: list[list[str]]
    category: list[str]
    subcategory: list[list[str]]   # per cluster, per style
    desc_words: list[list[str]]
    style_words: list[list[list[str]]]  # per cluster, per style
    level_words: list[list[list[str]]]  # per text attribute, per level: synonyms
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


def text_attributes() -> list[int]:
    """Indices of the attributes written only in the text."""
    return [k for k, m in enumerate(ATTRIBUTE_MODALITY) if m == "text"]


def make_catalogue(n_clusters: int, n_styles: int, root: str, rng: np.random.Generator) -> Catalogue:
    """Draw the appearance and vocabulary of every cluster and style, and the graded attribute words."""
    taken: set[str] = set(GENERIC_WORDS) | set(COLOUR_NAMES)
    words = lambda n: _pseudo_words(n, rng, taken)  # noqa: E731
    level_words = [[words(TEXT_SYNONYMS) for _ in range(TEXT_LEVELS)] for _ in text_attributes()]
    nouns = [words(3) for _ in range(n_clusters)]
    adjectives = [words(2) for _ in range(n_clusters)]
    brands = [[w.capitalize() for w in words(2)] for _ in range(n_clusters)]
    category = [w.capitalize() for w in words(n_clusters)]
    subcategory = [[w.capitalize() for w in words(n_styles)] for _ in range(n_clusters)]
    desc_words = [words(5) for _ in range(n_clusters)]
    style_words = [[words(1) for _ in range(n_styles)] for _ in range(n_clusters)]
    all_words = sorted(taken - set(GENERIC_WORDS) - set(COLOUR_NAMES))
    return Catalogue(
        root=root, shape=rng.permutation(np.resize(np.arange(len(SHAPES)), n_clusters)),
        bg_hue=(np.arange(n_clusters) * 0.618034 + rng.uniform(0, 1)) % 1.0,
        stripe_step=rng.integers(6, 13, n_clusters),
        nouns=nouns, adjectives=adjectives, brands=brands, category=category, subcategory=subcategory,
        desc_words=desc_words, style_words=style_words, level_words=level_words, all_words=all_words,
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
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(2, int(r / 2.5)))
    elif kind == "cross":
        w = r / 2.5
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    else:
        draw.polygon(_polygon(kind, cx, cy, r, angle), fill=fill)


def _draw_stripes(draw: ImageDraw.ImageDraw, size: int, angle: float, step: float, colour: tuple[int, int, int]) -> None:
    """Parallel lines across the canvas at `angle` (radians): the pattern's direction is an attribute."""
    dx, dy = math.cos(angle), math.sin(angle)          # along the stripes
    nx, ny = -dy, dx                                    # across them
    c = size / 2
    reach = size
    for k in range(-int(reach / step) - 1, int(reach / step) + 2):
        ox, oy = c + nx * k * step, c + ny * k * step
        draw.line((ox - dx * reach, oy - dy * reach, ox + dx * reach, oy + dy * reach), fill=colour,
                  width=max(1, int(step / 3)))


def family_word(family: int) -> str:
    """The product family's model name: a made-up word spelled from the family id (unique, nothing stored)."""
    syllables = []
    n_syl = len(_CONSONANTS) * len(_VOWELS)
    x = int(family) + n_syl * n_syl          # at least three syllables, so cluster words are not reused
    while x:
        x, r = divmod(x, n_syl)
        syllables.append(_CONSONANTS[r // len(_VOWELS)] + _VOWELS[r % len(_VOWELS)])
    return "".join(syllables)


def render_image(cat: Catalogue, cluster: int, family: int, attributes: np.ndarray, noise: float,
                 rng: np.random.Generator, size: int = 64) -> bytes:
    """A PNG: the cluster's shape and background over a striped pattern, turned as the product family is;
    colour, size, shade and the pattern's direction come from the item's attributes, with per-item noise."""
    a = attributes
    scale = size / 64
    bg = _rgb(cat.bg_hue[cluster] + rng.normal(0, 0.02), 0.2, 0.93 + rng.normal(0, 0.02))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    angle = (a[3] + rng.normal(0, 0.03 + 0.1 * noise)) * 0.85 * math.pi
    _draw_stripes(draw, size, angle, cat.stripe_step[cluster] * scale, _rgb(cat.bg_hue[cluster], 0.5, 0.55))
    hue = HUE_SPAN * a[0] + rng.normal(0, 0.01 + 0.06 * noise)
    value = 0.35 + 0.6 * a[2] + rng.normal(0, 0.02 + 0.1 * noise)
    fg = _rgb(hue, 0.85, value)
    jitter = size * 0.06
    cx, cy = size / 2 + rng.normal(0, jitter), size / 2 + rng.normal(0, jitter)
    r = size / 2 * (0.3 + 0.6 * a[1]) * (1 + rng.normal(0, 0.03 + 0.15 * noise))
    turn = (family * 0.618034) % 1.0 * 2 * math.pi + rng.normal(0, 0.05)
    _draw_shape(draw, SHAPES[cat.shape[cluster]], cx, cy, r, turn, fg)
    if rng.random() < noise:
        # A distractor: a small random shape in a random colour.
        _draw_shape(draw, SHAPES[rng.integers(len(SHAPES))], rng.uniform(0, size), rng.uniform(0, size),
                    size * 0.1, float(rng.uniform(0, 2 * math.pi)), _rgb(rng.random(), 0.9, 0.8))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _noisy(words: list[str], cat: Catalogue, noise: float, rng: np.random.Generator) -> list[str]:
    """Replace each word, with probability `noise`, by a word of a random cluster."""
    flips = rng.random(len(words)) < noise
    return [cat.all_words[rng.integers(len(cat.all_words))] if f else w for w, f in zip(words, flips)]


def _pick(words: list[str] | tuple[str, ...], n: int, rng: np.random.Generator) -> list[str]:
    return [words[i] for i in rng.integers(len(words), size=n)]


def _level_word(cat: Catalogue, slot: int, value: float, noise: float, rng: np.random.Generator) -> str:
    """A word of the graded set for `value`, read with noise (a neighbouring level now and then)."""
    level = int(np.clip(np.floor(value * TEXT_LEVELS + rng.normal(0, 0.15 + noise)), 0, TEXT_LEVELS - 1))
    return cat.level_words[slot][level][rng.integers(TEXT_SYNONYMS)]


def _colour_word(value: float, noise: float, rng: np.random.Generator) -> str:
    level = int(np.clip(np.floor(value * len(COLOUR_NAMES) + rng.normal(0, 0.3 + noise)), 0, len(COLOUR_NAMES) - 1))
    return COLOUR_NAMES[level]


def item_text(cat: Catalogue, cluster: int, style: int, family: int, attributes: np.ndarray, noise: float,
              rng: np.random.Generator) -> tuple[str, str | None, list[str], str | None]:
    """(title, brand, categories, description) from the cluster's and style's vocabularies, the family's
    model name and the item's text attributes (graded words; the colour sometimes), with noise."""
    brands = cat.brands[cluster]
    if rng.random() < 0.05:
        brand = None
    elif rng.random() < noise:
        other = int(rng.integers(len(cat.brands)))
        brand = cat.brands[other][rng.integers(len(cat.brands[other]))]
    else:
        brand = brands[family % len(brands)]
    slots = text_attributes()
    attr_words = [_level_word(cat, s, attributes[k], noise, rng) for s, k in enumerate(slots)]
    colour = [_colour_word(attributes[0], noise, rng)] if rng.random() < 0.6 else []
    model = [family_word(family)] if rng.random() >= noise else []
    # Titles name most text attributes, as real ones do ("soft cotton toddler blanket, large, blue").
    named = [w for w in attr_words if rng.random() < 0.8]
    title_words = (model + _pick(cat.adjectives[cluster], 1, rng) + colour + named
                   + _pick(cat.style_words[cluster][style], 1, rng) + _pick(cat.nouns[cluster], 2, rng))
    title = " ".join(_noisy(title_words, cat, noise, rng)).capitalize()
    if brand and rng.random() < 0.5:
        title = f"{brand} {title}"
    categories = [cat.root, cat.category[cluster], cat.subcategory[cluster][style]]
    if rng.random() < noise:
        categories = categories[:2]
    description = None
    if rng.random() >= 0.1:
        n = int(rng.integers(8, 18))
        source = rng.random(n)
        words = [cat.desc_words[cluster][rng.integers(len(cat.desc_words[cluster]))] if p < 0.5 else
                 cat.style_words[cluster][style][rng.integers(len(cat.style_words[cluster][style]))] if p < 0.6 else
                 GENERIC_WORDS[rng.integers(len(GENERIC_WORDS))] for p in source]
        # Each text attribute is named in the description most of the time, in its own graded words.
        words += [_level_word(cat, s, attributes[k], noise, rng) for s, k in enumerate(slots) if rng.random() < 0.85]
        words += [family_word(family)] if rng.random() < 0.7 else []
        words += [_colour_word(attributes[0], noise, rng)] if rng.random() < 0.7 else []
        words = [words[i] for i in rng.permutation(len(words))]
        description = " ".join(_noisy(words, cat, noise, rng)).capitalize() + "."
    return title, brand, categories, description
