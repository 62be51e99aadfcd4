"""Small planted datasets for the recsys tests, in memory or written as a dataset dir / MMRec folder."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pyarrow as pa

from raymmrec.data import schema
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.planted_data import PlantedInteractions, planted_interactions

# Fast-learning settings for the tiny planted set: many small batches, a larger step; one thread,
# since tiny tensors gain nothing from a second one and lose much when the cores are shared.
FAST_TRAINER = dict(batch_size=128, lr=0.01, eval_batch_size=64, num_threads=1)


@functools.lru_cache(maxsize=None)
def planted(seed: int = 0) -> PlantedInteractions:
    return planted_interactions("tiny", dims={"text": 16, "image": 24}, seed=seed)


def tiny_data(seed: int = 0) -> InteractionData:
    return planted(seed).to_data("tiny")


def assert_learns(name: str, epochs: int, margin: float = 0.05, min_drop: float = 0.2) -> None:
    """Trained on the tiny set, `name`'s loss falls by `min_drop` of its size and test Recall@20 beats popularity."""
    from raymmrec.recsys.metrics import full_ranking_metrics, popularity_scores
    from raymmrec.recsys.trainer import TrainerConfig, train_model

    data = tiny_data()
    result = train_model(name, {}, TrainerConfig(epochs=epochs, patience=100, **FAST_TRAINER), data)
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < losses[0] - min_drop * abs(losses[0]), losses        # abs: SelfCF's loss is negative
    pop = full_ranking_metrics(popularity_scores(data), data, "test")["recall@20"]
    assert result.test_at_best["recall@20"] > pop + margin, (result.test_at_best["recall@20"], pop)


def assert_checkpoint_round_trip(name: str) -> None:
    """A model rebuilt from another's state dict gives the same full-ranking scores."""
    import torch

    from raymmrec.recsys.registry import build_model

    data = tiny_data()
    torch.manual_seed(0)
    model = build_model(name, {}, data)
    model.train()
    model.pre_epoch(1)
    model.eval()
    torch.manual_seed(5)                 # LGMRec's scores keep MMRec's Gumbel noise: the same draw on both sides
    want = model.full_scores(torch.arange(data.n_users))
    torch.manual_seed(1)
    fresh = build_model(name, {}, data)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    torch.manual_seed(5)
    torch.testing.assert_close(fresh.full_scores(torch.arange(data.n_users)), want)


def with_features(features: dict[str, np.ndarray]) -> InteractionData:
    """The tiny planted interactions with `features` in place of their own."""
    p = planted()
    return InteractionData.from_arrays(p.users, p.items, p.splits, p.n_users, p.n_items, features)


def first_batch(data: InteractionData, model, size: int = 64):
    """The first BPR batch of an epoch, with negatives when `model` uses them."""
    from raymmrec.recsys.sampling import BPRSampler

    return next(BPRSampler(data, batch_size=size, negatives=model.uses_negatives).epoch())


def assert_one_finite_step(model, data: InteractionData) -> None:
    """One batch's loss and gradients are finite, and eval-mode scores have the catalogue's width."""
    import torch

    loss = model.loss(first_batch(data, model))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [q.grad for q in model.parameters() if q.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval()
    scores = model.full_scores(torch.arange(10))
    assert scores.shape == (10, data.n_items) and torch.isfinite(scores).all()


def assert_search_space_accepted(name: str) -> None:
    """Every value of `name`'s search space is accepted by its config dataclass."""
    from raymmrec.recsys.registry import get_model

    spec = get_model(name)
    for key, values in spec.search_space().items():
        for v in next(iter(values.values())):
            spec.make_config({key: v})


def write_dataset_dir(p: PlantedInteractions, root: Path, features: dict[str, np.ndarray] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    n = len(p.users)
    schema.write_table(pa.table({
        "user": pa.array(p.users, pa.int32()), "item": pa.array(p.items, pa.int32()),
        "rating": pa.array(np.ones(n, np.float32)), "timestamp": pa.array(np.arange(n, dtype=np.int64)),
        "split": pa.array(p.splits, pa.int8())}), root / schema.INTERACTIONS_FILE, schema.INTERACTIONS_SCHEMA)
    schema.write_table(pa.table({"item": pa.array(np.arange(p.n_items), pa.int32()),
                                 "asin": [f"A{i}" for i in range(p.n_items)]}),
                       root / schema.ITEMS_FILE, schema.ITEMS_SCHEMA)
    raw = root / schema.FEATURES_DIR / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, arr in (p.features if features is None else features).items():
        np.save(raw / f"{name}.npy", arr)
    return root


def write_mmrec_folder(p: PlantedInteractions, root: Path, name: str = "toy") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    lines += [f"{u}\t{i}\t5.0\t{t}\t{s}" for t, (u, i, s) in enumerate(zip(p.users, p.items, p.splits))]
    (root / f"{name}.inter").write_text("\n".join(lines) + "\n")
    np.save(root / "image_feat.npy", p.features["image"].astype(np.float64))
    np.save(root / "text_feat.npy", p.features["text"])
    return root
