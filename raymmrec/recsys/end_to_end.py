"""End-to-end (ETE) training, seed 002 / ALGORITHMS.md §5.2: the encoder re-embeds items inside the training loop
and the recommendation loss updates it, at its own learning rate.

Refresh granularity (the paper leaves it open): every step re-encodes the batch's distinct items (positives and
negatives) with gradients; every other item keeps its cached feature, which is re-encoded without gradients at the
start of each epoch and before each evaluation. The backbone therefore always sees the current encoder's output
for the items its loss depends on, and a stale-by-at-most-one-epoch feature elsewhere.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raymmrec.data import schema
from raymmrec.deepspeed_setup import DeepSpeedConfig
from raymmrec.encoders import EncoderConfig, MultimodalEncoder
from raymmrec.encoders.source import EncoderSource, resolve_encoder
from raymmrec.errors import ConfigError, DataError
from raymmrec.item_preprocess import IMAGE_OK, ITEM_COLUMNS, TextPlan, preprocess_items
from raymmrec.item_text import BEIT3_TEXT_FIELDS, CLIP_TEXT_FIELDS
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.backbone import Backbone
from raymmrec.recsys.sampling import Batch

RAY_ONLY_FIELDS = ("cpus_per_worker", "use_gpu", "max_failures", "storage_path")


@dataclass
class EndToEndConfig:
    """The encoder trained jointly with the backbone under `paradigm=ete`."""

    encoder: str = ""                 # stage-2 dir | EncoderConfig file | checkpoint | open_clip '<model>:<tag>' | '' (init)
    init: EncoderConfig = field(default_factory=lambda: EncoderConfig(kind="clip"))
    encoder_lr: float = 1e-5          # the encoder's own learning rate (the backbone uses trainer.lr)
    text_fields: list[str] = field(default_factory=list)   # empty: CLIP's or BEiT3's default fields
    seed: int = 0                     # random-init encoders: torch seed before building
    # >= 1: a Ray Train job of that many workers, each a shard of every batch, the encoder under DeepSpeed
    num_workers: int = 0
    # the encoder's engine: AdamW at encoder_lr, no clipping by default (the trainer's Adam does not clip either)
    deepspeed: DeepSpeedConfig = field(default_factory=lambda: DeepSpeedConfig(zero_stage=2, grad_clip=0.0))
    cpus_per_worker: float = 0.5      # < 1 on small nodes so Ray keeps a CPU for the driver's work
    use_gpu: bool | None = None       # None: use GPUs when the cluster has them
    max_failures: int = 2             # workers restarted from the last checkpoint this many times
    storage_path: str = ""            # Ray Train checkpoints; '' = <checkpoint dir>/ray

    def identity(self) -> dict[str, Any]:
        """The fields that change what training computes (the checkpoint dir's hash)."""
        d = dataclasses.asdict(self)
        for key in RAY_ONLY_FIELDS:
            d.pop(key)
        return d


@dataclass
class ItemInputs:
    """Every item's preprocessed encoder inputs, in item order, computed once before training."""

    pixels: torch.Tensor              # [n_items, 3, H, W] float32 (zeros where the image is missing)
    tokens: torch.Tensor              # [n_items, L] int64
    image_ok: torch.Tensor            # [n_items] bool
    text_ok: torch.Tensor             # [n_items] bool

    def to(self, device: torch.device) -> "ItemInputs":
        return ItemInputs(*(t.to(device) for t in dataclasses.astuple(self)))


def encoder_source(cfg: EndToEndConfig) -> EncoderSource:
    """Resolve `cfg.encoder` the way stage 3 does."""
    return resolve_encoder(cfg.encoder, cfg.init, cfg.seed)


def text_plan(cfg: EndToEndConfig, kind: str) -> TextPlan:
    """CLIP: one joined text per item; BEiT3: the fused pass over image and joined text."""
    default = BEIT3_TEXT_FIELDS if kind == "beit3" else CLIP_TEXT_FIELDS
    return TextPlan(kind, fields=tuple(cfg.text_fields or default))


def preprocess_dataset_items(dataset_dir: str | Path, encoder: EncoderConfig, plan: TextPlan,
                             n_items: int) -> ItemInputs:
    """Read items.parquet and turn every row into pixels + tokens with stage 3's preprocessing."""
    ds = schema.DatasetDir.at(dataset_dir)
    table = schema.read_table(ds.items, schema.ITEMS_SCHEMA, columns=ITEM_COLUMNS)
    arrays = preprocess_items(table, encoder, plan, str(ds.root))
    order = np.argsort(arrays["item"])
    items = arrays["item"][order]
    if len(items) != n_items or not np.array_equal(items, np.arange(n_items)):
        raise DataError(f"'{ds.items}': expected one row per item 0..{n_items - 1}, got {len(items)} rows")
    return ItemInputs(pixels=torch.from_numpy(arrays["pixels"][order]),
                      tokens=torch.from_numpy(arrays["tokens"][order]),
                      image_ok=torch.from_numpy(arrays["image_status"][order] == IMAGE_OK),
                      text_ok=torch.from_numpy(arrays["text_ok"][order]))


def encode_items(encoder: MultimodalEncoder, inputs: ItemInputs, items: torch.Tensor) -> dict[str, torch.Tensor]:
    """Modality features of `items` (text first, as MMRec orders them); missing inputs give zero rows."""
    pixels, tokens = inputs.pixels[items], inputs.tokens[items]
    image_ok, text_ok = inputs.image_ok[items, None], inputs.text_ok[items, None]
    # float(): a bf16 engine's output joins the backbone's fp32 features
    if encoder.kind == "beit3":
        return {"fused": encoder.encode_fused(pixels, tokens).float() * (image_ok & text_ok)}
    return {"text": encoder.encode_text(tokens).float() * text_ok,
            "image": encoder.encode_image(pixels).float() * image_ok}


def encode_all(encoder: MultimodalEncoder, inputs: ItemInputs, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Every item's features, without gradients."""
    n = len(inputs.tokens)
    parts: list[dict[str, torch.Tensor]] = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            parts.append(encode_items(encoder, inputs, torch.arange(start, min(start + batch_size, n),
                                                                     device=inputs.tokens.device)))
    return {m: torch.cat([p[m] for p in parts]) for m in parts[0]}


def with_encoded_features(data: InteractionData, encoder: MultimodalEncoder, inputs: ItemInputs) -> InteractionData:
    """`data` whose features are the encoder's current output (the backbone is built on these shapes)."""
    feats = {m: v.cpu().numpy() for m, v in encode_all(encoder, inputs).items()}
    return dataclasses.replace(data, features=feats, feature_set="ete", feature_files={},
                               item_graphs={}, _cache={})


class BatchEncoder(nn.Module):
    """The encoder as one module from item ids to their features, so a DeepSpeed engine runs one forward per step."""

    def __init__(self, encoder: MultimodalEncoder, inputs: ItemInputs) -> None:
        super().__init__()
        self.encoder, self.inputs = encoder, inputs

    def forward(self, items: torch.Tensor) -> dict[str, torch.Tensor]:
        return encode_items(self.encoder, self.inputs, items)

    def prepare_for_zero3(self) -> None:
        self.encoder.prepare_for_zero3()


class EndToEndBackbone(Backbone):
    """A backbone and its encoder as one module: the trainer's loss reaches the encoder through the item features."""

    def __init__(self, backbone: Backbone, encoder: MultimodalEncoder, inputs: ItemInputs, data: InteractionData,
                 encoder_lr: float) -> None:
        super().__init__(backbone.config, data)
        self.backbone, self.encoder, self.encoder_lr = backbone, encoder, encoder_lr
        self.uses_negatives = backbone.uses_negatives
        self.inputs = inputs
        self.cache: dict[str, torch.Tensor] = {}
        self.steps = 0                                  # training steps taken: the cache's staleness clock
        self._encoded: tuple[int, bool] | None = None   # (steps, train mode) of the last refresh
        self._step_encoder: Any = None                  # a DeepSpeed engine over BatchEncoder (Ray Train runs)

    def use_engine(self, engine: Any) -> None:
        """Encode each step's items through `engine` (a DeepSpeed engine over BatchEncoder of this encoder)."""
        # a plain attribute, not a submodule: its parameters are `self.encoder`'s and must not be saved twice
        object.__setattr__(self, "_step_encoder", engine)

    def load_state_dict(self, *args, **kwargs):
        out = super().load_state_dict(*args, **kwargs)
        self._encoded = None                            # new encoder weights: the cache is stale
        return out

    def _apply(self, fn, recurse: bool = True):
        # .to(device) also moves the precomputed inputs and the cache
        out = super()._apply(fn, recurse)
        self.inputs = ItemInputs(*(fn(t) for t in dataclasses.astuple(self.inputs)))
        self.cache = {m: fn(v) for m, v in self.cache.items()}
        return out

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": list(self.backbone.parameters()), "lr": lr},
                {"params": list(self.encoder.parameters()), "lr": self.encoder_lr}]

    def refresh(self) -> None:
        """Re-encode every item (no gradients) and hand the features to the backbone."""
        self.cache = encode_all(self.encoder, self.inputs)
        self.backbone.set_item_features(self.cache)
        self._encoded = (self.steps, self.encoder.training)

    def pre_epoch(self, epoch: int) -> None:
        self.refresh()
        self.backbone.pre_epoch(epoch)

    def loss(self, batch: Batch) -> torch.Tensor:
        if not self.cache:
            self.refresh()
        parts = [batch.pos_items] + ([batch.neg_items] if batch.neg_items is not None else [])
        items = torch.unique(torch.cat(parts))
        fresh = self._step_encoder(items) if self._step_encoder is not None else \
            encode_items(self.encoder, self.inputs, items)
        self.steps += 1
        # The batch's rows carry the encoder's graph; the rest are the epoch's cached values.
        self.backbone.set_item_features({m: self.cache[m].index_put((items,), fresh[m]) for m in self.cache})
        loss = self.backbone.loss(batch)
        with torch.no_grad():
            for m in self.cache:
                self.cache[m][items] = fresh[m].detach()
        return loss

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Re-encoding only when the encoder moved lets every rank refresh together (a collective under ZeRO-3)
        # and rank 0 alone evaluate on that cache.
        if self._encoded != (self.steps, self.encoder.training):
            self.refresh()
        return self.backbone.final_embeddings()


def check_end_to_end(data: InteractionData, model_cls: type[Backbone]) -> None:
    """Fail early when the model cannot be trained end to end or the data has no items table."""
    if model_cls.set_item_features is Backbone.set_item_features:
        raise ConfigError(f"model '{model_cls.name}' does not support paradigm=ete (it has no set_item_features; "
                          f"supported: vbpr, mmgcn)")
    if not data.source or not (Path(data.source) / schema.ITEMS_FILE).is_file():
        raise ConfigError(f"paradigm=ete needs a dataset dir with {schema.ITEMS_FILE} (images and text), "
                          f"got '{data.source or data.name}'")


def end_to_end_setup(cfg: EndToEndConfig, data: InteractionData,
                     model_cls: type[Backbone]) -> tuple[InteractionData, Any]:
    """(data with the encoder's initial features, the trainer's `wrap_model`) for `paradigm=ete` on a dataset dir."""
    check_end_to_end(data, model_cls)
    source = encoder_source(cfg)
    encoder = source.build().train()
    inputs = preprocess_dataset_items(data.source, source.config, text_plan(cfg, source.config.kind), data.n_items)
    ete_data = with_encoded_features(data, encoder, inputs)

    def wrap_model(backbone: Backbone) -> Backbone:
        return EndToEndBackbone(backbone, encoder, inputs, ete_data, cfg.encoder_lr)

    return ete_data, wrap_model
