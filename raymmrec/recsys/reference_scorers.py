"""Training-free reference scorers for calibrating a dataset: item-kNN on co-occurrence, item-kNN on content
features, and the oracle of a generated set's planted truth. Each returns a ScoreFn for metrics.evaluate_splits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from raymmrec.recsys.graphs import cosine_topk
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.metrics import ScoreFn


def _topk_matrix(cols: np.ndarray, vals: np.ndarray, n: int) -> sp.csr_matrix:
    """Row i keeps its k most similar items (itself dropped), weighted by similarity."""
    rows = np.repeat(np.arange(n), cols.shape[1])
    m = sp.csr_matrix((vals.ravel().astype(np.float32), (rows, cols.ravel())), shape=(n, n))
    m.setdiag(0.0)
    m.eliminate_zeros()
    return m


def _neighbour_scorer(data: InteractionData, similar: sp.csr_matrix) -> ScoreFn:
    """score(u, i) = Σ over u's training items j of sim(j, i), for i among j's neighbours."""
    scores = (data.split("train").astype(np.float32) @ similar).tocsr()

    def score(users: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(scores[users.cpu().numpy()].toarray())

    return score


def item_knn_scores(data: InteractionData, k: int = 50, block_rows: int = 2048) -> ScoreFn:
    """Item-based CF: cosine of the items' training-user columns, top-k per item, summed over the user's items."""
    train = data.split("train").astype(np.float32).tocsc()
    norms = np.sqrt(np.asarray(train.multiply(train).sum(axis=0)).ravel()).clip(1e-12)
    unit = (train @ sp.diags(1.0 / norms)).tocsc()
    unit_t = unit.T.tocsr()
    cols = np.zeros((data.n_items, k), np.int64)
    vals = np.zeros((data.n_items, k), np.float32)
    for lo in range(0, data.n_items, block_rows):
        hi = min(lo + block_rows, data.n_items)
        block = torch.from_numpy((unit_t[lo:hi] @ unit).toarray())          # [block, items] co-occurrence cosine
        top = torch.topk(block, min(k, data.n_items), dim=1)
        cols[lo:hi], vals[lo:hi] = top.indices.numpy(), top.values.numpy()
    return _neighbour_scorer(data, _topk_matrix(cols, vals, data.n_items))


def content_knn_scores(data: InteractionData, modalities: str = "", k: int = 50) -> ScoreFn:
    """Item-kNN on content: cosine of the unit-norm features (modalities joined by '+', default all), top-k."""
    names = modalities.split("+") if modalities else list(data.features)
    x = np.concatenate([_unit(data.modality_features(m)) for m in names], axis=1)
    cols, vals = cosine_topk(x, min(k + 1, data.n_items))
    return _neighbour_scorer(data, _topk_matrix(cols, np.maximum(vals, 0.0), data.n_items))


def oracle_scorer(data: InteractionData, truth_file: str | Path) -> ScoreFn:
    """The planted choice model of a generated set (synth_truth.npz): the ranking no recommender can beat."""
    from raymmrec.data.synth_latents import oracle_scores

    truth = dict(np.load(truth_file))

    def score(users: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(oracle_scores(truth, users.cpu().numpy()).astype(np.float32))

    return score


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
