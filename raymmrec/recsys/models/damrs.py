"""DA-MRS (Xv et al., KDD'24; MMRec's damrs.py): denoised item–item graphs per modality and from co-interactions,
pseudo-label neighbour discrimination, a user–item KL alignment and a confidence-weighted BPR.

Graphs. Per modality the cosine matrix S_m; an entry survives only where S_m ≥ mean(S_m) in EVERY modality
(the global mean is ‖Σ_i x̂_i‖² / n², so nothing n² is formed); each item keeps its k_i = min(k, survivors)
most similar survivors per modality; binary, D^-1/2 A D^-1/2 with row counts. The behaviour graph links an
item to itself and its `session_k` most co-interacted items (≥ 2 shared users; DA-MRS's item_graph_dict_2),
normalised the same way. All built blockwise and sparse.

Views h_v = S_v^L E_items for the M modality graphs and the behaviour graph (M + 1 views, MMRec: 3); items
score as LightGCN + mean_v h_v. Loss = weighted BPR + neighbor_weight · mean_v ND_v + kl_weight · KL, as in
`loss`. The pseudo-label search needs no gradient (only its top-10 indices are used) and runs without one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from raymmrec.recsys.embedding_tables import xavier_uniform_table
from raymmrec.recsys.graphs import lightgcn_propagate, sparse_mm
from raymmrec.recsys.interaction_data import InteractionData
from raymmrec.recsys.modal_branches import mmrec_modality_order
from raymmrec.recsys.backbone import ModelConfig, Backbone
from raymmrec.recsys.registry import register_model
from raymmrec.recsys.sampling import Batch
from raymmrec.recsys.sparse_item_graphs import register_csr_pair
from raymmrec.recsys.user_graph import user_cooccurrence_topk

PSEUDO_POSITIVES = 10     # hard-coded in MMRec's generate_pesudo_labels / neighbor_discrimination
NCE_TEMPERATURE = 0.2


@dataclass
class DAMRSConfig(ModelConfig):
    """DA-MRS hyper-parameters (MMRec's DAMRS.yaml); session_k is the k of its item_graph_dict_<k>.npy."""

    knn_k: int = 10
    n_mm_layers: int = 1
    n_ui_layers: int = 2
    kl_weight: float = 1.0
    neighbor_weight: float = 0.001
    session_k: int = 2
    knn_block_rows: int = 1024
    graph_block_products: int = 20_000_000

    @classmethod
    def search_space(cls) -> dict[str, dict[str, list]]:
        return {"n_ui_layers": {"grid": [2]}, "neighbor_weight": {"grid": [0.001]}, "kl_weight": {"grid": [1.0]},
                "n_mm_layers": {"grid": [1]}}


def binary_normalised(rows: np.ndarray, cols: np.ndarray, n: int) -> sp.csr_matrix:
    """Weight 1 per (row, col), then (d_r d_c)^-1/2 with d the row counts + 1e-7 (MMRec's Laplacian)."""
    inv = (np.bincount(rows, minlength=n) + 1e-7) ** -0.5
    return sp.csr_matrix(((inv[rows] * inv[cols]).astype(np.float32), (rows, cols)), shape=(n, n))


def mean_masked_knn_graphs(features: list[np.ndarray], k: int, block_rows: int = 1024) -> list[sp.csr_matrix]:
    """DA-MRS's modality graphs: top-k survivors of the all-modality mean mask, one graph per modality."""
    units = [F.normalize(torch.as_tensor(np.asarray(f, dtype=np.float32)), dim=1) for f in features]
    n = units[0].shape[0]
    k = min(k, n)
    means = [float(u.sum(0).pow(2).sum()) / n ** 2 for u in units]
    rows, cols = [], [[] for _ in units]
    with torch.no_grad():
        for start in range(0, n, block_rows):
            sims = [u[start:start + block_rows] @ u.T for u in units]
            keep = torch.ones_like(sims[0], dtype=torch.bool)
            for s, mean in zip(sims, means):
                keep &= s >= mean
            # MMRec counts the survivors on its last (text) matrix, then takes that many from each
            count = (keep & (sims[-1] != 0)).sum(1).clamp(max=k)
            slot = torch.arange(k).expand(len(count), k) < count[:, None]
            rows.append((torch.arange(len(count))[:, None] + start).expand(-1, k)[slot].numpy())
            for j, s in enumerate(sims):
                cols[j].append(torch.topk(s.masked_fill(~keep, 0.0), k, dim=1).indices[slot].numpy())
    r = np.concatenate(rows).astype(np.int64)
    return [binary_normalised(r, np.concatenate(c).astype(np.int64), n) for c in cols]


def behaviour_graph(train: sp.spmatrix, k: int, max_products: int = 20_000_000) -> sp.csr_matrix:
    """Self-loops plus each item's ≤ k most co-interacted items (≥ 2 shared users), binary-normalised."""
    co = user_cooccurrence_topk(sp.csr_matrix(train).T.tocsr(), k, max_products)
    co.data[co.data < 2] = 0
    co.eliminate_zeros()
    coo = co.tocoo()
    n = co.shape[0]
    self_loops = np.arange(n, dtype=np.int64)
    return binary_normalised(np.concatenate([self_loops, coo.row]), np.concatenate([self_loops, coo.col]), n)


def sigmoid_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MMRec's Bernoulli KL(σ(a) ‖ σ(b)), elementwise, written with log-sigmoids of the logits."""
    pa = torch.sigmoid(a)
    return pa * (F.logsigmoid(a) - F.logsigmoid(b)) + (1 - pa) * (F.logsigmoid(-a) - F.logsigmoid(-b))


def neighbour_discrimination(emb: torch.Tensor, all_emb: torch.Tensor, multi: torch.Tensor,
                             single: torch.Tensor) -> torch.Tensor:
    """Cosine InfoNCE with the multi-view pseudo-positives, then the single-view ones against the rest."""
    e, a = F.normalize(emb, dim=1), F.normalize(all_emb, dim=1)
    multi_score = torch.exp((e[:, None, :] * a[multi]).sum(2) / NCE_TEMPERATURE).sum(1)
    single_score = torch.exp((e[:, None, :] * a[single]).sum(2) / NCE_TEMPERATURE).sum(1)
    total = torch.exp(e @ a.T / NCE_TEMPERATURE).sum(1)
    return (-torch.log(multi_score / total + 1e-9) - torch.log(single_score / (total - multi_score) + 1e-9)).mean()


@register_model("damrs")
class DAMRS(Backbone):
    """LightGCN plus denoised modality / behaviour item views, trained with DA-MRS's denoising objectives."""

    Config = DAMRSConfig
    needs_features = True

    def __init__(self, config: DAMRSConfig, data: InteractionData) -> None:
        super().__init__(config, data)
        d = config.embedding_size
        self.modalities = mmrec_modality_order(data.features)
        self.user_embedding = xavier_uniform_table(self.n_users, d)
        self.item_embedding = xavier_uniform_table(self.n_items, d)
        key = ("damrs", tuple(self.modalities), config.knn_k)
        if key not in data.item_graphs:    # travels with the data, like the other kNN graphs
            data.item_graphs[key] = mean_masked_knn_graphs([data.features[m] for m in self.modalities],
                                                           config.knn_k, config.knn_block_rows)
        self.views = [f"modality_adj_{m}" for m in self.modalities] + ["behaviour_adj"]
        for name, graph in zip(self.views, data.item_graphs[key]):
            register_csr_pair(self, name, graph)
        register_csr_pair(self, "behaviour_adj", data._cached(("damrs_behaviour", config.session_k), lambda: (
            behaviour_graph(data.train, config.session_k, config.graph_block_products))))
        self.register_buffer("adj", data.adjacency("sym"), persistent=False)

    def _forward(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """LightGCN users and items, and the item views h_v (modalities in MMRec's order, then behaviour)."""
        out = lightgcn_propagate(self.adj, torch.cat([self.user_embedding, self.item_embedding]),
                                 self.config.n_ui_layers)
        views = []
        for name in self.views:
            h = self.item_embedding
            for _ in range(self.config.n_mm_layers):
                h = sparse_mm(getattr(self, name), h, getattr(self, f"{name}_t"))
            views.append(h)
        return out[: self.n_users], out[self.n_users:], views

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items, views = self._forward()
        return users, items + sum(views) / len(views)

    def _pseudo_labels(self, views: list[torch.Tensor], ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per view: top-10 of Σ_other p + 2 p_view (multi-view positives), then the view's own top-10 of the rest."""
        with torch.no_grad():
            probs = [torch.softmax(F.normalize(h[ids], dim=1) @ F.normalize(h, dim=1).T, dim=1) for h in views]
            total = sum(probs)
            labels = []
            k = min(PSEUDO_POSITIVES, self.n_items // 2)     # two disjoint top-k sets must fit
            for p in probs:
                multi = torch.topk(total + p, k, dim=1).indices
                single = torch.topk(p.scatter(1, multi, 0.0), k, dim=1).indices
                labels.append((multi, single))
        return labels

    def _pair_weights(self, u: torch.Tensor, views: list[torch.Tensor], pos: torch.Tensor,
                      neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Detached per-pair weights: mean·exp(−var)² of the views' σ(u·ĥ⁺); for the negative term the best view's
        margin over the batch-mean σ(u·ĥ⁻), only where the views' mean falls below it."""
        with torch.no_grad():
            p = torch.sigmoid(torch.stack([(u * F.normalize(h[pos], dim=-1)).sum(1) for h in views]))
            n_mean = torch.sigmoid(torch.stack([(u * F.normalize(h[neg], dim=-1)).sum(1) for h in views])).mean()
            p_mean = p.mean(0)
            pos_weight = (p_mean * torch.exp(-p.var(0)) ** 2).clamp(0, 1)
            neg_weight = ((p.max(0).values - n_mean) * (p_mean < n_mean)).clamp(0, 1)
        return pos_weight, neg_weight

    def loss(self, batch: Batch) -> torch.Tensor:
        users, items, views = self._forward()
        user_ids = torch.unique(batch.users)
        item_ids = torch.unique(torch.cat([batch.pos_items, batch.neg_items]))
        labels = self._pseudo_labels(views, item_ids)
        discrimination = sum(neighbour_discrimination(h[item_ids], h, multi, single)
                             for h, (multi, single) in zip(views, labels)) / len(views)
        view_mean = sum(views) / len(views)
        u_set = users[user_ids]
        graph_logits = u_set @ F.normalize(items[item_ids], dim=-1).T
        view_logits = u_set @ F.normalize(view_mean[item_ids], dim=-1).T
        kl = (sigmoid_kl(graph_logits, view_logits) + sigmoid_kl(view_logits, graph_logits)).mean()
        u = users[batch.users]
        pos_weight, neg_weight = self._pair_weights(u, views, batch.pos_items, batch.neg_items)
        scored = items + view_mean
        diff = (u * scored[batch.pos_items]).sum(1) - (u * scored[batch.neg_items]).sum(1)
        bpr = -(F.logsigmoid(diff) * pos_weight + F.logsigmoid(-diff) * neg_weight).mean()
        return bpr + self.config.neighbor_weight * discrimination + self.config.kl_weight * kl
