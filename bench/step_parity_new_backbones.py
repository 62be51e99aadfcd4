"""Step-parity cases of DRAGON, SMORE, PGL, DA-MRS and MVGAE against MMRec's own classes (run by step_parity.py).

Each case is (repo, class path, MMRec config, our config, MMRec → our parameter names), plus optional hooks:
`before(data, folder, mmrec_src)` writes the files MMRec's constructor reads (DRAGON's user graph, DA-MRS's
item graph), `after(ref, ours)` aligns what is not a parameter (DRAGON's sampled epoch user graph, MVGAE's
unregistered tables).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch


def _linear(ref: str, ours: str, bias: bool = True) -> dict[str, str]:
    return {f"{ref}.weight": f"{ours}.weight", **({f"{ref}.bias": f"{ours}.bias"} if bias else {})}


def write_mmrec_user_graph(data, folder: Path, mmrec_src: str) -> None:
    """DRAGON's user_graph_dict.npy, written by MMRec's own DualGNN preprocessing function (top-200 co-users)."""
    from mmrec_module_parity import _mmrec_user_graph

    _mmrec_user_graph(Path(mmrec_src).parent, data, folder)


def write_damrs_item_graph(data, folder: Path, mmrec_src: str) -> None:
    """DA-MRS's item_graph_dict_2.npy (its repo's build_iib_graph.py: top-2 co-interacted items, ≥ 2 shared
    users), written from our behaviour graph after checking it against that recipe run densely here."""
    from raymmrec.recsys.user_graph import user_cooccurrence_topk

    r = torch.from_numpy((data.train > 0).toarray().astype(np.float32))
    dense = r.T @ r
    dense.fill_diagonal_(0)
    dense[dense < 2] = 0
    ours = user_cooccurrence_topk(data.train.T.tocsr(), 2)
    graph = {}
    for i in range(data.n_items):
        top = torch.topk(dense[i], min(int((dense[i] > 0).sum()), 2))
        row = ours[i]
        keep = row.data >= 2
        if sorted(top.values.tolist()) != sorted(row.data[keep].tolist()):
            raise AssertionError(f"damrs behaviour graph, item {i}: counts {row.data[keep]} vs {top.values}")
        graph[i] = [row.indices[keep].tolist(), row.data[keep].tolist()]
    np.save(folder / "item_graph_dict_2.npy", graph, allow_pickle=True)


def _use_mmrec_user_draw(ref, ours) -> None:
    """Run MMRec's per-epoch neighbour draw and give ours the same graph."""
    from raymmrec.recsys.graphs import to_torch_csr

    del ref._parameters["result_embed"]    # a Parameter only on CPU (.to(cuda) makes it a tensor it reassigns)
    ref.pre_epoch_processing()
    index, weights = np.array(ref.epoch_user_graph), ref.user_weight_matrix.numpy()
    n, k = index.shape
    w = sp.csr_matrix((weights.ravel(), (np.repeat(np.arange(n), k), index.ravel())), shape=(n, n))
    ours.user_adj, ours.user_adj_t = to_torch_csr(w), to_torch_csr(w.T.tocsr())
    ours._built_seed = max(int(ours.user_graph_seed), 0)


def _gcn(ref: str, ours: str) -> dict[str, str]:
    return {f"{ref}.preference": f"preference.{ours}", **_linear(f"{ref}.MLP", f"projection.{ours}.0"),
            **_linear(f"{ref}.MLP_1", f"projection.{ours}.2")}


def _same_pruning_seed(ref, ours) -> None:
    """Both draw the epoch's pruned graph from the same torch seed (the edge order is the same)."""
    torch.manual_seed(11)
    ref.pre_epoch_processing()
    torch.manual_seed(11)
    ours.pre_epoch(1)


def _mvgae_align(ref, ours) -> None:
    """MVGAE: copy MMRec's unregistered random tables; compare in eval mode (its dropout and sampling are random)."""
    with torch.no_grad():
        ours.features_collaborative.copy_(ref.collaborative)
        for r, b in (("v_gcn", "image"), ("t_gcn", "text"), ("c_gcn", "collaborative")):
            ours.branches[b].preference.copy_(getattr(ref, r).preference)
    ref.eval()
    ours.eval()


def _mvgae_names(ref: str, ours: str, n_layers: int = 1) -> dict[str, str]:
    names = {**_linear(f"{ref}.MLP", f"branches.{ours}.projection")}
    for k in range(1, n_layers + 1):
        names.update({f"{ref}.conv_embed_{k}.weight": f"branches.{ours}.convs.{k - 1}.weight",
                      f"{ref}.conv_embed_{k}.bias": f"branches.{ours}.convs.{k - 1}.bias",
                      **_linear(f"{ref}.g_layer{k}", f"branches.{ours}.combines.{k - 1}")})
    for k, part in ((4, "mu"), (5, "logvar")):
        names.update({f"{ref}.conv_embed_{k}.weight": f"branches.{ours}.{part}_conv.weight",
                      f"{ref}.conv_embed_{k}.bias": f"branches.{ours}.{part}_conv.bias",
                      **_linear(f"{ref}.linear_layer{k}", f"branches.{ours}.{part}_skip"),
                      **_linear(f"{ref}.g_layer{k}", f"branches.{ours}.{part}_out")})
    return names


_FEATURES = {"image_embedding.weight": "feature_tables.image", "text_embedding.weight": "feature_tables.text",
             **_linear("image_trs", "projections.image"), **_linear("text_trs", "projections.text")}
_SMORE_GATES = {"gate_v": "purifiers.image", "gate_t": "purifiers.text", "gate_f": "fusion_purifier",
                "gate_image_prefer": "preferences.image", "gate_text_prefer": "preferences.text",
                "gate_fusion_prefer": "fusion_preference"}

CASES = {
    "dragon": ("mmrec", "models.dragon.DRAGON",
               dict(feat_embed_dim=64, n_mm_layers=1, n_layers=2, knn_k=10, mm_image_weight=0.1, aggr_mode="add",
                    reg_weight=1e-3, user_graph_dict_file="user_graph_dict.npy"),
               {"reg_weight": 1e-3},
               {**_gcn("v_gcn", "image"), **_gcn("t_gcn", "text"), "weight_u": "user_weight", "weight_i": "item_weight"}),
    "smore": ("mmrec", "models.smore.SMORE",
              dict(n_ui_layers=3, n_layers=1, reg_weight=1e-3, image_knn_k=10, text_knn_k=15, dropout_rate=0.0,
                   cl_loss=0.1),
              {"reg_weight": 1e-3, "text_knn_k": 15, "cl_loss": 0.1},
              {"user_embedding.weight": "user_embedding", "item_id_embedding.weight": "item_embedding",
               **_FEATURES, "image_complex_weight": "filters.image", "text_complex_weight": "filters.text",
               "fusion_complex_weight": "fusion_filter",
               **{k: v for r, o in _SMORE_GATES.items() for k, v in _linear(f"{r}.0", f"{o}.0").items()},
               **_linear("query_v.0", "queries.image.0"), **_linear("query_v.2", "queries.image.2", bias=False),
               **_linear("query_t.0", "queries.text.0"), **_linear("query_t.2", "queries.text.2", bias=False)}),
    "pgl": ("mmrec", "models.pgl.PGL",
            dict(feat_embed_dim=64, knn_k=10, n_mm_layers=1, n_ui_layers=2, mm_image_weight=0.1, reg_weight=0.1,
                 dropout=0.0, mode="local", lambda_coeff=0.9),
            {"reg_weight": 0.1, "dropout": 0.0},
            {"user_image.weight": "user_tables.image", "user_text.weight": "user_tables.text", **_FEATURES}),
    "damrs": ("mmrec", "models.damrs.DAMRS",
              dict(feat_embed_dim=64, knn_k=10, n_mm_layers=1, n_ui_layers=2, kl_weight=1.0, neighbor_weight=0.1,
                   lambda_coeff=0.9, cf_model="lightgcn", reg_weight=0.0, item_graph_dict_file="item_graph_dict_2.npy"),
              {"neighbor_weight": 0.1},
              {"user_embedding.weight": "user_embedding", "item_id_embedding.weight": "item_embedding"}),
    "mvgae": ("mmrec", "models.mvgae.MVGAE", dict(n_layers=1, beta=0.1), {"beta": 0.1},
              {**_mvgae_names("v_gcn", "image"), **_mvgae_names("t_gcn", "text"),
               **_mvgae_names("c_gcn", "collaborative")}),
}

BEFORE = {"dragon": write_mmrec_user_graph, "damrs": write_damrs_item_graph}
AFTER = {"dragon": _use_mmrec_user_draw, "pgl": _same_pruning_seed, "mvgae": _mvgae_align}
# MMRec's MVGAE trains on the batch's item ids as node ids (user rows); it is given item node ids (+ n_users)
# so that both compute the same, intended, loss.
ITEM_NODE_IDS = {"mvgae"}
