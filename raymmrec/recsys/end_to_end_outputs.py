"""What an end-to-end run leaves for the other stages, inside its own checkpoint dir: the trained encoder's item
features as a normal feature set, its consolidated weights as a stage-2 encoder dir, and both named (by path) in
best.pt, so stage 5 needs no extra flags and the dataset dir is never written."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from raymmrec.data import schema
from raymmrec.encoders import MultimodalEncoder, save_encoder
from raymmrec.feature_sets import TABLE_FILE, publish, staging_dir, write_item_table, write_manifest
from raymmrec.recsys.checkpoint import load_checkpoint, update_checkpoint
from raymmrec.recsys.end_to_end import (EndToEndConfig, ItemInputs, encode_all, encoder_source,
                                        preprocess_dataset_items, text_plan)

ENCODER_DIR = "encoder"


def feature_set_name(checkpoint_dir: str | Path) -> str:
    """`ete-<hash>`: one feature set per training run (its checkpoint dir), rewritten when the run is resumed."""
    return "ete-" + hashlib.sha256(Path(checkpoint_dir).resolve().name.encode()).hexdigest()[:12]


def best_encoder(cfg: EndToEndConfig, best: str | Path, n_items: int,
                 dataset_dir: str | Path) -> tuple[MultimodalEncoder, ItemInputs]:
    """The encoder saved in an end-to-end best.pt, and every item's preprocessed inputs."""
    source = encoder_source(cfg)
    encoder = source.build()
    prefix = "encoder."
    weights = load_checkpoint(best)["model"]
    encoder.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
    inputs = preprocess_dataset_items(dataset_dir, source.config, text_plan(cfg, source.config.kind), n_items)
    return encoder.eval(), inputs


def publish_end_to_end(cfg: EndToEndConfig, best: str | Path, encoder: MultimodalEncoder, inputs: ItemInputs,
                       dataset_dir: str | Path) -> tuple[str, Path]:
    """Write <checkpoint dir>/ete-<hash>/ (the feature set) and <checkpoint dir>/encoder/, record both in best.pt;
    returns (the feature set's folder, the encoder dir)."""
    best = Path(best)
    ds = schema.DatasetDir.at(dataset_dir)
    name = feature_set_name(best.parent)
    inputs = inputs.to(next(encoder.parameters()).device)
    feats = {m: v.cpu().numpy() for m, v in encode_all(encoder.eval(), inputs).items()}
    final = (best.parent / name).resolve()
    tmp = staging_dir(final)
    for modality, arr in feats.items():
        np.save(tmp / f"{modality}.npy", arr)
    items = pq.read_table(ds.items, columns=["item", "asin"]).sort_by("item")
    flags = {"image_ok": inputs.image_ok.cpu().numpy(), "text_ok": inputs.text_ok.cpu().numpy()}
    write_item_table(tmp / TABLE_FILE, np.arange(len(items)), items["asin"].to_pylist(), flags | feats)
    write_manifest(tmp, {
        "name": name, "method": "ete", "modalities": list(feats), "dims": {m: int(a.shape[1]) for m, a in feats.items()},
        "encoder": encoder_source(cfg).describe() | {"trained_end_to_end": True}, "checkpoint": str(best),
        "counts": {"items": len(items), "image_ok": int(flags["image_ok"].sum()),
                   "text_missing": int((~flags["text_ok"]).sum())},
        "table": TABLE_FILE, "dataset": str(ds.root), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    publish(tmp, final)
    encoder_dir = save_encoder(encoder, best.parent / ENCODER_DIR, extra={"paradigm": "ete", "checkpoint": str(best)})
    update_checkpoint(best, paradigm="ete", feature_set=str(final), dataset=str(ds.root.resolve()),
                      encoder_dir=str(encoder_dir.resolve()))
    return str(final), encoder_dir
