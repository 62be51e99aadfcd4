"""Stage 5: top-K items per user from a trained backbone, written to Parquet through Ray Data.

Users are scored in batches by an actor pool (one model load per actor). Each user gets the model's
top-K over all items minus their training items, and a content-only top-K over cold items (fewer than 5
training interactions), whose ID embeddings a backbone has barely trained: the user's profile is the mean
normalised content feature of their training items, and cold items are ranked by cosine to it.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from raymmrec import tracking
from raymmrec.errors import ConfigError, DataError
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.metrics import MASKED_SCORE, users_per_block
from raymmrec.runtime import RayConfig, init_ray

RECOMMENDATIONS_SCHEMA = pa.schema([
    pa.field("user", pa.int32(), nullable=False),
    pa.field("items", pa.list_(pa.int32())),           # model top-K, best first, training items excluded
    pa.field("scores", pa.list_(pa.float32())),
    pa.field("cold_items", pa.list_(pa.int32())),      # content-only top-K among cold items
    pa.field("cold_scores", pa.list_(pa.float32())),
])


@dataclass
class RecommendConfig:
    """Where the model and data come from, how many items per user, where the Parquet goes."""

    data: str = ""                 # dataset dir or MMRec folder the model was trained on ('' = the checkpoint's)
    features: str = "raw"          # its feature set ("" for none); an end-to-end checkpoint's own set wins
    checkpoint: str = ""           # a training checkpoint (best.pt) ...
    run_id: str = ""               # ... or an MLflow run whose artifacts hold checkpoint/best.pt
    k: int = 20
    cold_k: int = 10               # 0 turns the content-only cold-start list off
    output: str = "runs/recommendations"
    batch_users: int = 1024
    actors: int = 2
    cpus_per_actor: float = 0.5    # fractional, so Ray Data's read tasks still get a CPU on small nodes
    device: str = "cpu"
    ray: RayConfig = field(default_factory=RayConfig)
    tracking: tracking.TrackingConfig = field(default_factory=tracking.TrackingConfig)


def content_profile_matrix(data: InteractionData) -> np.ndarray | None:
    """Items × d content matrix: each modality L2-normalised, concatenated, normalised again (None without features)."""
    if not data.features:
        return None
    parts = []
    for arr in data.features.values():
        parts.append(arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12))
    content = np.concatenate(parts, axis=1).astype(np.float32)
    return content / np.maximum(np.linalg.norm(content, axis=1, keepdims=True), 1e-12)


def cold_start_scores(train_rows, content: np.ndarray, cold_items: np.ndarray) -> np.ndarray:
    """Cosine between each user's mean training-item content and every cold item (users × cold items)."""
    counts = np.asarray(train_rows.sum(axis=1)).ravel()
    profile = np.asarray(train_rows @ content) / np.maximum(counts, 1)[:, None]
    profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
    return profile @ content[cold_items].T


class TopKRecommender:
    """Ray Data actor: loads the model once, maps a batch of user ids to their recommendation lists."""

    def __init__(self, data: Any, checkpoint: str, k: int, cold_k: int, device: str) -> None:
        from raymmrec.recsys.trainer import load_trained_model

        self.data = InteractionData.resolve(data)
        self.model = load_trained_model(checkpoint, self.data, device)
        self.device = self.model.device
        self.k = min(k, self.data.n_items)
        self.cold = np.flatnonzero(self.data.cold_items)
        self.content = content_profile_matrix(self.data) if cold_k > 0 else None
        self.cold_k = min(cold_k, len(self.cold)) if self.content is not None else 0

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        users = np.asarray(batch["id"], dtype=np.int64)
        train_rows = self.data.train[users]
        with torch.no_grad():
            scores = self.model.full_scores(torch.as_tensor(users, device=self.device)).float()
            rows = np.repeat(np.arange(len(users)), np.diff(train_rows.indptr))
            scores[torch.as_tensor(rows, device=self.device),
                   torch.as_tensor(train_rows.indices.astype(np.int64), device=self.device)] = MASKED_SCORE
            top_scores, top_items = torch.topk(scores, self.k, dim=1)
        top_items, top_scores = top_items.cpu().numpy(), top_scores.cpu().numpy()
        if self.cold_k > 0:
            cs = cold_start_scores(train_rows, self.content, self.cold)
            cs[train_rows[:, self.cold].nonzero()] = -np.inf   # a cold item the user already has is no news
            idx = np.argpartition(-cs, self.cold_k - 1, axis=1)[:, : self.cold_k]
            part = np.take_along_axis(cs, idx, axis=1)
            order = np.argsort(-part, axis=1)
            cold_items = self.cold[np.take_along_axis(idx, order, axis=1)]
            cold_scores = np.take_along_axis(part, order, axis=1)
        else:
            cold_items = np.zeros((len(users), 0), np.int32)
            cold_scores = np.zeros((len(users), 0), np.float32)
        # An Arrow table with list columns: returning numpy rows would make Ray write tensor columns instead.
        return pa.table({"user": users.astype(np.int32), "items": _lists(top_items, pa.int32()),
                         "scores": _lists(top_scores, pa.float32()), "cold_items": _lists(cold_items, pa.int32()),
                         "cold_scores": _lists(cold_scores, pa.float32())}, schema=RECOMMENDATIONS_SCHEMA)


def _lists(matrix: np.ndarray, type_: pa.DataType) -> pa.ListArray:
    """Rows of a 2-D array as an Arrow list column."""
    n, k = matrix.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), type=type_))


def resolve_checkpoint(cfg: RecommendConfig) -> str:
    """The checkpoint path to load: `checkpoint`, or checkpoint/best.pt of MLflow run `run_id`."""
    if cfg.checkpoint:
        if not Path(cfg.checkpoint).is_file():
            raise DataError(f"checkpoint '{cfg.checkpoint}' does not exist")
        return cfg.checkpoint
    if cfg.run_id:
        import mlflow

        tracking.setup(cfg.tracking)
        try:
            return mlflow.artifacts.download_artifacts(run_id=cfg.run_id, artifact_path="checkpoint/best.pt",
                                                       dst_path=tempfile.mkdtemp(prefix="raymmrec-ckpt-"))
        except Exception as exc:  # MLflow raises several types for a missing run or artifact
            raise DataError(f"MLflow run '{cfg.run_id}' has no artifact checkpoint/best.pt ({exc})") from None
    raise ConfigError("recommend needs 'checkpoint' (a best.pt) or 'run_id' (an MLflow run with checkpoint/best.pt)")


def trained_on(cfg: RecommendConfig, checkpoint: str) -> tuple[str, str]:
    """(dataset dir, feature set) to score with: an end-to-end checkpoint names the set its encoder wrote."""
    from raymmrec.recsys.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)
    data_dir = cfg.data or state.get("dataset", "")
    if not data_dir:
        raise ConfigError("recommend needs 'data': the dataset dir (or MMRec folder) the model was trained on")
    return data_dir, state.get("feature_set") or cfg.features


def write_recommendations(cfg: RecommendConfig, out: Callable[[str], None] = print) -> Path:
    """Write top-K recommendations for every user to `<output>/` as Parquet; returns that folder."""
    import ray

    if cfg.k < 1 or cfg.cold_k < 0:
        raise ConfigError(f"recommend: k must be >= 1 and cold_k >= 0 (got k={cfg.k}, cold_k={cfg.cold_k})")
    checkpoint = resolve_checkpoint(cfg)
    data_dir, features = trained_on(cfg, checkpoint)
    data = InteractionData.load(data_dir, features or None)
    init_ray(cfg.ray)
    out_dir = Path(cfg.output)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    params = {"data": data_dir, "features": features, "checkpoint": checkpoint, "k": cfg.k, "cold_k": cfg.cold_k}
    with tracking.job_run(cfg.tracking, "recommend", params, tags={"stage": "recommend"}):
        out(f"recommending top-{cfg.k} (+{cfg.cold_k} cold-start) for {data.n_users} users with {checkpoint}")
        ref = data.put()
        users = ray.data.range(data.n_users, override_num_blocks=max(2 * cfg.actors, 2))
        recs = users.map_batches(
            TopKRecommender, batch_size=users_per_block(cfg.batch_users, data.n_items), batch_format="numpy",
            fn_constructor_kwargs={"data": ref, "checkpoint": checkpoint, "k": cfg.k, "cold_k": cfg.cold_k,
                                   "device": cfg.device},
            compute=ray.data.ActorPoolStrategy(size=cfg.actors), num_cpus=cfg.cpus_per_actor)
        recs.write_parquet(str(out_dir))
        table = pq.read_table(out_dir)
        if table.num_rows != data.n_users:
            raise DataError(f"recommendations in '{out_dir}' cover {table.num_rows} users, expected {data.n_users}")
        tracking.log_metrics({"users": table.num_rows, "k": cfg.k})
        sample = table.sort_by("user").slice(0, 20).to_pylist()
        tracking.log_table([{k: str(v) if isinstance(v, list) else v for k, v in r.items()} for r in sample],
                           "recommendations_sample.json")
        out(recommendations_preview(sample[:5]))
    return out_dir


def recommendations_preview(rows: list[dict[str, Any]], shown: int = 5) -> str:
    """A small table of the first users' lists."""
    lines = [f"{'user':>6}  {'top items':<40}  cold-start items"]
    for r in rows:
        items = ", ".join(map(str, r["items"][:shown])) + (" …" if len(r["items"]) > shown else "")
        cold = ", ".join(map(str, (r["cold_items"] or [])[:shown]))
        lines.append(f"{r['user']:>6}  {items:<40}  {cold}")
    return "\n".join(lines)


def read_recommendations(path: str | Path) -> pa.Table:
    """The recommendations Parquet folder as one table, sorted by user."""
    return pq.read_table(path, schema=RECOMMENDATIONS_SCHEMA).sort_by("user")
