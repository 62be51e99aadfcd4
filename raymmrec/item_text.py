"""Item texts, shared by pre-training, extraction and end-to-end training: the joined text of an item's fields
(CLIP / BEiT3, the pre-training pairs) and CLIPER's per-field prompts (views)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

TEXT_FIELDS = ("title", "brand", "categories", "description")

# CLIPER (Wu et al. 2025, "Prompt Design"): one template per metadata field, in the order of its output.
FIELD_TEMPLATES: dict[str, str] = {
    "title": "The product title is {}.",
    "brand": "The product brand is {}.",
    "categories": "The product categories are {}.",
    "description": "The product description is {}",     # no final period, as in the paper and its code
}
GLOBAL_VIEW = "global"
# The paper's global view: "The product descriptions are ___", filled by concatenating the field views.
GLOBAL_TEMPLATE = "The product descriptions are {}"
VIEWS: tuple[str, ...] = (*FIELD_TEMPLATES, GLOBAL_VIEW)

CLIP_TEXT_FIELDS = TEXT_FIELDS                                       # MMRec's text_feat sentence fields
BEIT3_TEXT_FIELDS = ("title", "brand", "description")               # AlignRec: "title+brand+description"


def item_text(row: Mapping[str, Any], fields: Sequence[str] = TEXT_FIELDS) -> str:
    """The text of an item: its fields in order, lists joined by ', ', nested lists flattened, blanks skipped."""
    parts = []
    for name in fields:
        flat = _flatten_text(row.get(name))
        if flat:
            parts.append(flat)
    return ". ".join(parts)


def _flatten_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(s for s in (_flatten_text(v) for v in value) if s)
    return str(value).strip()


def field_value(name: str, value: Any) -> str | None:
    """The field as one line of text, or None when it is missing (CLIPER: length ≤ 1 after stripping)."""
    if value is None:
        return None
    if name == "categories" and not isinstance(value, str):
        # CLIPER keeps the first category path with its tokens joined by spaces; ours is already one path
        parts = [str(v).strip() for v in value if v is not None and str(v).strip()]
        text = " ".join(parts)
    else:
        text = " ".join(str(value).split())     # newlines and runs of blanks → one space
    return text if len(text) > 1 else None


def cliper_views(row: Mapping[str, Any], views: Sequence[str] = VIEWS) -> list[str | None]:
    """The filled prompt of each view, None where its field is missing (the view then drops out of the softmax)."""
    fields = {name: field_value(name, row.get(name)) for name in FIELD_TEMPLATES}
    filled = {name: FIELD_TEMPLATES[name].format(v) for name, v in fields.items() if v is not None}
    out: list[str | None] = []
    for view in views:
        if view == GLOBAL_VIEW:
            present = [filled[name] for name in FIELD_TEMPLATES if name in filled]
            out.append(GLOBAL_TEMPLATE.format(" ".join(present)) if present else None)
        elif view in FIELD_TEMPLATES:
            out.append(filled.get(view))
        else:
            raise ValueError(f"unknown CLIPER view {view!r}; expected one of {', '.join(VIEWS)}")
    return out


def joined_text(row: Mapping[str, Any], fields: Sequence[str]) -> str | None:
    """The item's fields joined into one text (the pre-training text), None when every field is missing."""
    text = item_text(dict(row), tuple(fields))
    return text if text.strip() else None
