"""One training step of our models against the reference code (MMRec's, AlignRec's), same weights and batch.

    python bench/step_parity.py mmrec_src=/path/MMRec/src alignrec_src=/path/AlignRec_CIKM24/src
    python bench/step_parity.py mmrec_src=/path/MMRec/src models='[freedom]' data=/path/mmrec_folder replay_epochs=3

The reference model (MMRec's, or the AlignRec repo's ALIGNREC) is built on the tiny planted set, its
weights are copied into ours, and both compute the loss and gradients of the same batch (LATTICE: the
first batch of an epoch, which rebuilds the learned graph with gradient, and a second one on the frozen
graph), then full-ranking scores in eval mode. BM3 runs with dropout 0 (its target views are random).
Shims, for today's scipy and a CPU: `dok_matrix._update`, `Tensor.cuda` as identity, `torch_scatter.scatter_add`,
a `sparsesvd` stand-in (PGL imports it for the `global` mode it does not run here).
Each model runs in its own process (MMRec and the AlignRec repo share module names). Models that draw random
numbers (LayerGCN's and MMGCF's edge pruning, SelfCF's edge and embedding dropout, LGMRec's Gumbel noise and
dropout) are compared with numpy and torch seeded alike before each side's call; ours draw in MMRec's order.
A gradient that is zero in exact arithmetic (a fusion bias adds the same vector to the positive and the negative
item, so it cancels in BPR) shows float32 noise, and a large relative figure, on both sides.
FREEDOM: both graphs are compared entry by entry, then both sides train on MMRec's pruned graph. `data` (an
MMRec folder, read by ours as-is) replaces the planted set; `replay_epochs` then trains both for that many
epochs from the same weights on the same batches and pruned graphs (only float rounding differs), and
compares their validation / test Recall@20 after each: a gap there is the code's, not the seeds'.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raymmrec.config import load_config  # noqa: E402
from raymmrec.errors import ConfigError, exit_on_user_error  # noqa: E402
from raymmrec.recsys.report import format_table  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import step_parity_new_backbones as new_backbones  # noqa: E402

BATCH = 96
ID_TABLES = {"user_embedding.weight": "user_embedding", "item_id_embedding.weight": "item_embedding"}
FEATURE_TABLES = {"image_embedding.weight": "feature_tables.image", "text_embedding.weight": "feature_tables.text"}


def _linear(ref: str, ours: str, bias: bool = True) -> dict[str, str]:
    return {f"{ref}.weight": f"{ours}.weight", **({f"{ref}.bias": f"{ours}.bias"} if bias else {})}


# model: (reference repo, reference class path, reference config, our config, reference → our parameter names)
CASES = {
    "lattice": ("mmrec", "models.lattice.LATTICE",
                dict(feat_embed_dim=64, weight_size=[64, 64], lambda_coeff=0.9, reg_weight=1e-3, cf_model="lightgcn",
                     mess_dropout=[0.1, 0.1], n_layers=1, knn_k=10),
                {"reg_weight": 1e-3},
                {**ID_TABLES, **FEATURE_TABLES, **_linear("image_trs", "projections.image"),
                 **_linear("text_trs", "projections.text")}),
    "bm3": ("mmrec", "models.bm3.BM3", dict(n_layers=2, dropout=0.0, reg_weight=0.1, cl_weight=2.0),
            {"n_layers": 2, "dropout": 0.0, "reg_weight": 0.1},
            {**ID_TABLES, **FEATURE_TABLES, **_linear("predictor", "predictor"),
             **_linear("image_trs", "projections.image"), **_linear("text_trs", "projections.text")}),
    "mgcn": ("mmrec", "models.mgcn.MGCN", dict(n_ui_layers=2, n_layers=1, reg_weight=1e-3, knn_k=10, cl_loss=0.1),
             {"reg_weight": 1e-3, "cl_loss": 0.1},
             {**ID_TABLES, **FEATURE_TABLES, **_linear("image_trs", "projections.image"),
              **_linear("text_trs", "projections.text"),
              **_linear("query_common.0", "query_common.0"), **_linear("query_common.2", "query_common.2", bias=False),
              **_linear("gate_v.0", "purifiers.image.0"), **_linear("gate_t.0", "purifiers.text.0"),
              **_linear("gate_image_prefer.0", "preferences.image.0"),
              **_linear("gate_text_prefer.0", "preferences.text.0")}),
    "freedom": ("mmrec", "models.freedom.FREEDOM",
                dict(feat_embed_dim=64, knn_k=10, lambda_coeff=0.9, cf_model="lightgcn", n_mm_layers=1, n_ui_layers=2,
                     reg_weight=1e-4, mm_image_weight=0.1, dropout=0.8, degree_ratio=1.0),
                {"dropout": 0.8, "reg_weight": 1e-4},
                {"user_embedding.weight": "user_embedding.weight", "item_id_embedding.weight": "item_id_embedding.weight",
                 "image_embedding.weight": "feature_tables.image.weight",
                 "text_embedding.weight": "feature_tables.text.weight",
                 **_linear("image_trs", "feature_projections.image"), **_linear("text_trs", "feature_projections.text")}),
    "alignrec": ("alignrec", "models.alignrec.ALIGNREC",
                 dict(cl_loss=0.05, n_ui_layers=2, knn_k=10, n_layers=1, reg_weight=1e-3, desc="parity", use_ln=False,
                      sim_weight=0.3, ui_cosine_loss_weight=0.1, side_emb_div=0, use_hist_decoder=False,
                      test_arch1=False, ui_cosine_loss=True),
                 {"cca_weight": 0.05, "sim_weight": 0.3, "reg_weight": 1e-3},
                 {**ID_TABLES, "mm_embedding.weight": "feature_table", **_linear("mm_trs", "encoder"),
                  **_linear("gate_v.0", "gate.0")}),
    # issue 16: MMRec's later backbones (LayerGCN / MMGCF prune edges in pre_epoch; SelfCF, LGMRec draw noise
    # in the loss: both sides are seeded alike before every call, and our models draw in MMRec's order)
    "layergcn": ("mmrec", "models.layergcn.LayerGCN", dict(n_layers=4, reg_weight=1e-3, dropout=0.1),
                 {"n_layers": 4, "reg_weight": 1e-3, "dropout": 0.1},
                 {"user_embeddings": "user_embedding", "item_embeddings": "item_embedding"}),
    "selfcf": ("mmrec", "models.selfcfed_lgn.SELFCFED_LGN", dict(n_layers=2, dropout=0.1, reg_weight=1e-3),
               {"n_layers": 2, "dropout": 0.1, "reg_weight": 1e-3},
               {"online_encoder.embedding_dict.user_emb": "user_embedding",
                "online_encoder.embedding_dict.item_emb": "item_embedding", **_linear("predictor", "predictor")}),
    "itemknncbf": ("mmrec", "models.itemknncbf.ItemKNNCBF", dict(knn_k=10, shrink=10), {"knn_k": 10, "shrink": 10.0},
                   {}),
    **{f"mmgcf:{fusion}-{weighting}": (
        "mmrec", "models.mmgcf.MMGCF",
        dict(feat_embed_dim=64, n_ui_layers=2, reg_weight=1e-3, fusion_mode=fusion, weighting=weighting, dropout=0.5),
        {"n_ui_layers": 2, "reg_weight": 1e-3, "fusion_mode": fusion, "weighting": weighting, "dropout": 0.5},
        {"user_embedding.weight": "user_embedding.weight", "item_id_embedding.weight": "item_id_embedding.weight",
         **_linear("image_trs", "projections.image"), **_linear("text_trs", "projections.text"),
         **({"mm_alpha": "mm_alpha"} if weighting == "alpha" else {}),
         **({**_linear("all_concat_layer", "all_concat"), **_linear("mm_concat_layer", "mm_concat"),
             **_linear("id_mm_concat_layer", "id_mm_concat")} if fusion == "concat" else {})})
       for fusion, weighting in (("mean", "equal"), ("sum", "normalized"), ("concat", "alpha"))},
    "lgmrec": ("mmrec", "models.lgmrec.LGMRec",
               dict(feat_embed_dim=64, cf_model="lightgcn", n_ui_layers=2, n_mm_layers=2, n_hyper_layer=1, hyper_num=4,
                    keep_rate=0.5, alpha=0.3, cl_weight=1e-2, reg_weight=1e-3),
               {"cl_weight": 1e-2, "reg_weight": 1e-3},
               {"user_embedding.weight": "user_embedding.weight", "item_id_embedding.weight": "item_id_embedding.weight",
                "item_image_trs": "projections.image", "item_text_trs": "projections.text",
                "v_hyper": "hyperedges.image", "t_hyper": "hyperedges.text"}),
}
CASES.update(new_backbones.CASES)
PRE_EPOCH = ("layergcn", "mmgcf", "freedom")     # models whose first epoch starts by pruning the training graph
SCORES_ONLY = ("itemknncbf",)         # nothing trained: only the scores compare


@dataclass
class StepParityConfig:
    """Where the reference sources are and which models to compare."""

    mmrec_src: str = ""                     # MMRec's src/ (models/, common/, utils/)
    alignrec_src: str = ""                  # AlignRec_CIKM24's src/
    models: list[str] = field(default_factory=lambda: list(CASES))
    work: str = "/tmp/raymmrec-step-parity"
    data: str = ""                          # an MMRec folder instead of the planted set
    replay_epochs: int = 0                  # FREEDOM: epochs trained side by side on the same batches


def _install_shims(work: Path) -> None:
    import numpy as np
    import scipy.sparse as sp
    import torch

    torch.Tensor.cuda = lambda self, *a, **k: self
    if not hasattr(sp.dok_matrix, "_update"):
        sp.dok_matrix._update = lambda self, d: [self.__setitem__(k, v) for k, v in d.items()]
    scatter = type(sys)("torch_scatter")
    scatter.scatter_add = lambda src, index, dim=-1, out=None, dim_size=None: torch.zeros(
        int(index.max()) + 1 if dim_size is None else dim_size, dtype=src.dtype).index_add(0, index, src)
    sys.modules["torch_scatter"] = scatter
    sparsesvd = type(sys)("sparsesvd")     # PGL imports it for its `global` mode only
    sparsesvd.sparsesvd = None
    sys.modules.setdefault("sparsesvd", sparsesvd)
    for alias, real in (("float", float), ("int", int), ("bool", bool)):
        if alias not in np.__dict__:
            setattr(np, alias, real)


def _alias_models_common() -> None:
    """MMRec's layergcn.py imports `models.common.*`, which its tree keeps at `common.*`."""
    import importlib

    for name in ("common", "common.abstract_recommender", "common.loss", "common.init"):
        sys.modules["models." + name] = importlib.import_module(name)


def _seed(seed: int = 7) -> None:
    """Seed numpy and torch alike before each side's random draws."""
    import numpy as np
    import torch

    np.random.seed(seed)
    torch.manual_seed(seed)


def _freedom_graph_rows(ref, ours) -> list[dict]:
    """FREEDOM's three graphs, MMRec's against ours: item kNN graph, user–item graph, pruning weights per edge."""
    import numpy as np
    import scipy.sparse as sp

    from raymmrec.recsys.graphs import to_scipy_csr

    def scipy_of(t):
        t = t.coalesce()
        return sp.csr_matrix((t.values().numpy(), tuple(t.indices().numpy())), shape=tuple(t.shape))

    knn_ref, knn_ours = scipy_of(ref.mm_adj), to_scipy_csr(ours.mm_adj)
    differ = np.flatnonzero(np.asarray(abs(knn_ref - knn_ours).max(axis=1).todense()).ravel() > 1e-6)
    ui = abs(scipy_of(ref.norm_adj) - to_scipy_csr(ours.norm_adj)).max()

    def by_edge(index, values):
        key = index[0].long() * ours.n_items + index[1].long()
        return values[key.argsort()], key.sort().values

    (w_ref, k_ref), (w_ours, k_ours) = by_edge(ref.edge_indices, ref.edge_values), by_edge(ours.edges, ours.edge_weights)
    same_edges = bool(k_ref.shape == k_ours.shape and (k_ref == k_ours).all())
    w = (w_ref - w_ours).abs().max().item() if same_edges else float("inf")
    return [{"model": "freedom", "check": "item kNN graph: rows differing", "reference": str(knn_ref.nnz),
             "ours": str(knn_ours.nnz), "max rel diff": f"{len(differ)} rows"},
            {"model": "freedom", "check": "user-item graph: max abs diff", "reference": "", "ours": "",
             "max rel diff": f"{ui:.1e}"},
            {"model": "freedom", "check": "pruning weights: max abs diff", "reference": "", "ours": "",
             "max rel diff": f"{w:.1e}" if same_edges else "edge sets differ"}]


def _share_pruned_graph(ref, ours) -> None:
    """Prune with MMRec's code and give ours the very same graph (the draw is random on both sides)."""
    import scipy.sparse as sp

    from raymmrec.recsys.graphs import to_torch_csr

    ref.pre_epoch_processing()
    m = ref.masked_adj.coalesce()
    ours.masked_adj = to_torch_csr(sp.csr_matrix((m.values().numpy(), tuple(m.indices().numpy())), shape=tuple(m.shape)))


def _replay(ref, ours, data, mapping: dict, epochs: int, batch_size: int) -> list[dict]:
    """Train both from the same weights on the same batches and pruned graphs; metrics after every epoch."""
    import torch

    from raymmrec.recsys.metrics import evaluate_splits
    from raymmrec.recsys.sampling import BPRSampler

    sampler = BPRSampler(data, batch_size=batch_size, seed=999)
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in (ref, ours)]
    ref_p, our_p = dict(ref.named_parameters()), dict(ours.named_parameters())
    rows = []
    for epoch in range(1, epochs + 1):
        ref.train()
        ours.train()
        _share_pruned_graph(ref, ours)
        for batch in sampler.epoch():
            for opt, loss in zip(optimizers, (lambda: ref.calculate_loss([batch.users, batch.pos_items,
                                                                           batch.neg_items]), lambda: ours.loss(batch))):
                opt.zero_grad(set_to_none=True)
                loss().backward()
                opt.step()
        ref.eval()
        ours.eval()
        got = [evaluate_splits(fn, data, ks=(20,)) for fn in (lambda u: ref.full_sort_predict([u]), ours.full_scores)]
        worst = max(((ref_p[a] - our_p[b]).abs().max() / ref_p[a].abs().max()).item() for a, b in mapping.items())
        r, o = (" / ".join(f"{g[s][m]:.4f}" for s, m in (("valid", "recall@20"), ("test", "recall@20"),
                                                          ("test", "cold_recall@20"))) for g in got)
        rows.append({"model": "freedom", "check": f"replay epoch {epoch}: valid / test / cold test R@20", "reference": r,
                     "ours": o, "max rel diff": f"{worst:.1e} (weights)"})
    return rows


def compare_one(model: str, src: str, work: Path, data_dir: str = "", replay_epochs: int = 0) -> list[dict]:
    """Build both models on the tiny planted set (or an MMRec folder), align weights, compare losses, gradients
    and scores (FREEDOM: also its graphs, and `replay_epochs` of training side by side)."""
    import importlib
    import shutil

    import numpy as np
    import torch

    from raymmrec.recsys.interaction_data import InteractionData
    from raymmrec.recsys.planted_data import planted_interactions
    from raymmrec.recsys.registry import build_model
    from raymmrec.recsys.sampling import Batch, BPRSampler

    _install_shims(work)
    sys.path.insert(0, src)
    repo, class_path, ref_cfg, our_cfg, mapping = CASES[model]
    registered = model.split(":")[0]     # a case may be `model:variant`
    if repo == "mmrec":
        _alias_models_common()
    if data_dir:
        data = InteractionData.from_mmrec_folder(data_dir)
        feats = {"image": data.features["image"]} if model == "alignrec" else data.features
    else:
        p = planted_interactions("tiny", dims={"text": 16, "image": 24}, seed=0)
        feats = {"image": p.features["image"]} if model == "alignrec" else p.features   # ALIGNREC reads image_feat only
        data = InteractionData.from_arrays(p.users, p.items, p.splits, p.n_users, p.n_items, feats)
    batch_size = 2048 if data_dir else BATCH
    folder = work / "tiny"
    shutil.rmtree(folder, ignore_errors=True)   # MMRec caches graphs there by k only
    folder.mkdir(parents=True)
    for name, arr in feats.items():
        np.save(folder / f"{name}_feat.npy", arr)
    if model in new_backbones.BEFORE:
        new_backbones.BEFORE[model](data, folder, src)

    class Dataset:
        dataset = None
        get_user_num = staticmethod(lambda: data.n_users)
        get_item_num = staticmethod(lambda: data.n_items)

        @staticmethod
        def inter_matrix(form="coo"):
            m = data.train.tocoo().astype(np.float32)
            m.data[:] = 1.0
            return m

    Dataset.dataset = Dataset
    cfg = dict(USER_ID_FIELD="userID", ITEM_ID_FIELD="itemID", NEG_PREFIX="neg_", train_batch_size=batch_size,
               device="cpu", end2end=False, is_multimodal_model=True, data_path=f"{work}/", dataset="tiny",
               vision_feature_file="image_feat.npy", text_feature_file="text_feat.npy", embedding_size=64,
               mask_image=False, mask_text=False, multimodal_data_dir="", **ref_cfg)
    module, cls = class_path.rsplit(".", 1)
    torch.manual_seed(0)
    ref = getattr(importlib.import_module(module), cls)(cfg, Dataset)
    ours = build_model(registered, our_cfg, data)
    ref_p, our_p = dict(ref.named_parameters()), dict(ours.named_parameters())
    extra = set(our_p) - set(mapping.values()) - {"modal_weight"}
    extra -= {"placeholder"} if registered in SCORES_ONLY else set()
    if extra:
        raise ConfigError(f"{model}: parameters without a reference counterpart: {sorted(extra)}")
    with torch.no_grad():
        for a, b in mapping.items():
            our_p[b].copy_(ref_p[a])
        if model == "lattice":   # MMRec's weights are [image, text]; ours follow data.features
            ref.modal_weight.copy_(torch.tensor([0.3, 0.7]))
            ours.modal_weight.copy_(torch.tensor([0.7 if m == "text" else 0.3 for m in ours.modalities]))
            mapping = {**mapping, "modal_weight": "modal_weight"}
        if model in new_backbones.AFTER:
            new_backbones.AFTER[model](ref, ours)
    batch = next(BPRSampler(data, batch_size=batch_size, seed=3).epoch())
    ours_batch = batch if ours.uses_negatives else Batch(batch.users, batch.pos_items, None)
    rows = []
    if model == "freedom":
        rows += _freedom_graph_rows(ref, ours)

    def grad(params, name):
        g = params[name].grad
        if model == "lattice" and name == "modal_weight" and g is not None and params is our_p:
            g = g.flip(0) if ours.modalities[0] == "text" else g
        return torch.zeros_like(params[name]) if g is None else g

    if registered in PRE_EPOCH:
        _seed()
        ref.pre_epoch_processing()
        _seed()
        ours.pre_epoch(1)
    for step in () if registered in SCORES_ONLY else (1, 2) if model == "lattice" else (1,):
        ref.zero_grad(set_to_none=True)
        ours.zero_grad(set_to_none=True)
        # clones: some MMRec models (DRAGON, DualGNN) shift the item ids of the batch in place
        shift = data.n_users if model in new_backbones.ITEM_NODE_IDS else 0
        _seed()
        lr = ref.calculate_loss([batch.users.clone(), batch.pos_items + shift, batch.neg_items + shift])
        _seed()
        lo = ours.loss(ours_batch)
        lr.backward()
        lo.backward()
        worst, worst_name = max((((grad(ref_p, a) - grad(our_p, b)).abs().max()
                                  / grad(ref_p, a).abs().max().clamp_min(1e-6)).item(), b)
                                for a, b in mapping.items())
        rows.append({"model": model, "check": f"batch {step}: loss", "reference": f"{lr.item():.6f}",
                     "ours": f"{lo.item():.6f}", "max rel diff": f"{abs(lr.item() - lo.item()) / abs(lr.item()):.1e}"})
        rows.append({"model": model, "check": f"batch {step}: gradients", "reference": "", "ours": worst_name,
                     "max rel diff": f"{worst:.1e}"})
    ref.eval()
    ours.eval()
    with torch.no_grad():
        users = torch.arange(min(100, data.n_users))
        _seed()
        want = ref.full_sort_predict([users])
        _seed()
        got = ours.full_scores(users)
    rows.append({"model": model, "check": "eval: full-ranking scores", "reference": "", "ours": "",
                 "max rel diff": f"{((want - got).abs().max() / want.abs().max()).item():.1e}"})
    if model == "freedom" and replay_epochs > 0:
        rows += _replay(ref, ours, data, mapping, replay_epochs, batch_size)
    return rows


@exit_on_user_error
def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        print("RESULT " + json.dumps(compare_one(argv[1], argv[2], Path(argv[3]), argv[4], int(argv[5]))), flush=True)
        return
    cfg = load_config(StepParityConfig, argv)
    unknown = [m for m in cfg.models if m not in CASES]
    if unknown:
        raise ConfigError(f"step parity covers {', '.join(CASES)}; got {', '.join(unknown)}")
    rows = []
    for model in cfg.models:
        src = cfg.alignrec_src if CASES[model][0] == "alignrec" else cfg.mmrec_src
        if not (Path(src) / "models").is_dir():
            raise ConfigError(f"{model}: set {CASES[model][0]}_src to the reference repo's src/ folder (got '{src}')")
        proc = subprocess.run([sys.executable, "-W", "ignore", __file__, "--one", model, src,
                               str(Path(cfg.work) / model), cfg.data, str(cfg.replay_epochs)],
                              capture_output=True, text=True)
        found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not found:
            print(f"{model}: failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        rows += json.loads(found[0][len("RESULT "):])
    print(format_table(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
