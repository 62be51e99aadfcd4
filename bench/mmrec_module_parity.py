"""Our MMGCN, GRCN, DualGNN and SLMRec against MMRec's own modules: same weights, same batch, same numbers.

    python bench/mmrec_module_parity.py mmrec=/path/to/MMRec          # a checkout of enoche/MMRec

Builds each model on the tiny planted set, copies its weights into MMRec's class (imported from the
checkout, run unmodified), and compares the full representation and the loss of one batch. DualGNN's
user graph is built by MMRec's own preprocessing function and compared with `user_cooccurrence_topk`.
Shims, none touching the maths: MMRec's dataset object is faked, `torch_scatter` (imported but unused by
SLMRec) is stubbed, GRCN's `torch.zeros(1).cuda()` runs on CPU, and DualGNN's `result_embed` Parameter
(CUDA turns it into a plain tensor) is removed so its forward can assign it.
"""
from __future__ import annotations

import importlib.util
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from raymmrec.config import load_config  # noqa: E402
from raymmrec.errors import ConfigError, exit_on_user_error  # noqa: E402
from raymmrec.recsys.graphs import to_torch_csr  # noqa: E402
from raymmrec.recsys.registry import build_model  # noqa: E402
from raymmrec.recsys.report import format_table  # noqa: E402
from raymmrec.recsys.sampling import BPRSampler  # noqa: E402
from raymmrec.recsys.user_graph import user_cooccurrence_topk  # noqa: E402


@dataclass
class ParityConfig:
    """Where MMRec is checked out, and the tolerance on max relative differences."""

    mmrec: str = ""
    tolerance: float = 1e-4


def _fake_loader(data):
    train = data.train.copy()
    train.data[:] = 1

    class Dataset:
        def get_user_num(self):
            return data.n_users

        def get_item_num(self):
            return data.n_items

        def inter_matrix(self, form="coo"):
            return train.astype(np.float32).asformat(form)

    class Loader(Dataset):
        dataset = Dataset()

    return Loader()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _copy_mmgcn(ours, ref):
    ref.id_embedding.copy_(ours.id_embedding)
    for m, g in (("image", ref.v_gcn), ("text", ref.t_gcn)):
        o = ours.gcns[m]
        g.preference.copy_(o.preference)
        if o.projection is not None:
            g.MLP.load_state_dict(o.projection.state_dict())
        for k in range(3):
            getattr(g, f"conv_embed_{k + 1}").weight.copy_(o.conv[k])
            getattr(g, f"linear_layer{k + 1}").load_state_dict(o.linear[k].state_dict())
            getattr(g, f"g_layer{k + 1}").load_state_dict(o.combine[k].state_dict())
    return ours._representation(), ref.forward()


def _copy_grcn(ours, ref):
    ref.id_gcn.id_embedding.copy_(ours.id_embedding)
    ref.model_specific_conf.copy_(ours.confidence)
    for m, g in (("image", ref.v_gcn), ("text", ref.t_gcn)):
        g.preference.copy_(ours.preference[m])
        g.MLP.load_state_dict(ours.projection[m].state_dict())
    return ours._representation(), ref.forward()


def _copy_dualgnn(ours, ref):
    ref.pre_epoch_processing()
    del ref._parameters["result_embed"]
    index, weights = np.array(ref.epoch_user_graph), ref.user_weight_matrix.numpy()
    n, k = index.shape
    w = sp.csr_matrix((weights.ravel(), (np.repeat(np.arange(n), k), index.ravel())), shape=(n, n))
    ours.user_adj, ours.user_adj_t = to_torch_csr(w), to_torch_csr(w.T.tocsr())   # MMRec's own draw
    ours._built_seed = max(int(ours.user_graph_seed), 0)                            # ... is the current one
    ref.weight_u.copy_(ours.user_weight)
    ref.weight_i.copy_(ours.item_weight)
    for m, g in (("image", ref.v_gcn), ("text", ref.t_gcn)):
        g.preference.copy_(ours.preference[m])
        g.MLP.load_state_dict(ours.projection[m][0].state_dict())
        g.MLP_1.load_state_dict(ours.projection[m][2].state_dict())
    return None, None


def _copy_slmrec(ours, ref):
    ref.embedding_user.weight.copy_(ours.user_embedding)
    ref.embedding_item.weight.copy_(ours.item_embedding)
    for r, o in ((ref.v_dense, ours.dense["image"]), (ref.t_dense, ours.dense["text"]),
                 (ref.embedding_user_after_GCN, ours.user_fusion), (ref.embedding_item_after_GCN, ours.item_fusion),
                 (ref.g_i_iv, ours.g_id), (ref.g_v_iv, ours.g_modality[0]), (ref.g_iv_iva, ours.g_chain[0]),
                 (ref.g_iva_ivat, ours.g_chain[1]), (ref.g_t_ivat, ours.g_modality[1])):
        r.load_state_dict(o.state_dict())
    return torch.cat(ours.final_embeddings()), torch.cat(ref.compute())


MODELS = {  # ours, MMRec module, class, extra MMRec config, weight copier
    "mmgcn": ("mmgcn", "MMGCN", {"n_layers": 2}, _copy_mmgcn),
    "grcn": ("grcn", "GRCN", {"latent_embedding": 64, "n_layers": 3}, _copy_grcn),
    "dualgnn": ("dualgnn", "DualGNN", {"aggr_mode": "add", "user_graph_dict_file": "user_graph_dict.npy"},
                _copy_dualgnn),
    "slmrec": ("slmrec", "SLMRec", {"recdim": 64, "layer_num": 3, "mm_fusion_mode": "concat", "temp": 0.2,
                                    "ssl_task": "FAC", "ssl_temp": 0.1, "ssl_alpha": 0.1, "init": "xavier",
                                    "adj_type": "pre"}, _copy_slmrec),
}


def _mmrec_user_graph(mmrec: Path, data, folder: Path) -> dict:
    """DualGNN's user_graph_dict.npy written by MMRec's own preprocessing function."""
    spec = importlib.util.spec_from_file_location("mmrec_uu", mmrec / "preprocessing" / "dualgnn-gen-u-u-matrix.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    coo = sp.coo_matrix(data.train)
    dense = gen.gen_user_matrix(np.stack([coo.row, coo.col], 1), data.n_users)
    graph = {}
    for u in range(data.n_users):
        top = torch.topk(dense[u], min(int((dense[u] > 0).sum()), 200))
        graph[u] = [top.indices.numpy().tolist(), top.values.numpy().tolist()]
    np.save(folder / "user_graph_dict.npy", graph, allow_pickle=True)
    return graph


@exit_on_user_error
def main(argv: list[str]) -> None:
    cfg = load_config(ParityConfig, argv)
    mmrec = Path(cfg.mmrec)
    if not (mmrec / "src" / "models" / "mmgcn.py").is_file():
        raise ConfigError(f"mmrec='{cfg.mmrec}': expected a checkout of enoche/MMRec (src/models/mmgcn.py)")
    sys.path.insert(0, str(mmrec / "src"))
    sys.modules.setdefault("torch_scatter", types.SimpleNamespace(scatter=None))
    torch.Tensor.cuda = lambda self, *a, **k: self      # GRCN's torch.zeros(1).cuda() on a CPU machine
    from recsys_planted import tiny_data

    data = tiny_data()
    work = Path(tempfile.mkdtemp(prefix="mmrec-parity-"))
    folder = work / "tiny"
    folder.mkdir()
    np.save(folder / "image_feat.npy", data.features["image"])
    np.save(folder / "text_feat.npy", data.features["text"])
    graph = _mmrec_user_graph(mmrec, data, folder)
    ours_graph = user_cooccurrence_topk(data.train, 200)
    rows = [{"model": "dualgnn user graph", "check": "top-200 co-users and counts",
             "max rel diff": 0.0 if all(
                 set(graph[u][0]) == set(ours_graph[u].indices.tolist())
                 and sorted(graph[u][1], reverse=True) == ours_graph[u].data.tolist()
                 for u in range(data.n_users)) else 1.0}]
    base = {"USER_ID_FIELD": "userID", "ITEM_ID_FIELD": "itemID", "NEG_PREFIX": "neg__", "train_batch_size": 64,
            "device": "cpu", "end2end": False, "is_multimodal_model": True, "data_path": f"{work}/",
            "dataset": "tiny", "vision_feature_file": "image_feat.npy", "text_feature_file": "text_feat.npy",
            "embedding_size": 64, "reg_weight": 1e-3}
    batch = next(BPRSampler(data, 64).epoch())
    for name, (module, cls, extra, copy) in MODELS.items():
        torch.manual_seed(0)
        ours = build_model(name, {} if name == "slmrec" else {"reg_weight": 1e-3}, data)
        ref = getattr(__import__(f"models.{module}", fromlist=[cls]), cls)({**base, **extra}, _fake_loader(data))
        with torch.no_grad():
            mine, theirs = copy(ours, ref)
        inter = [batch.users.clone(), batch.pos_items.clone(), batch.neg_items.clone()]
        ref_loss = ref.calculate_loss(inter).reshape(())
        if name == "dualgnn":
            mine, theirs = torch.cat(ours.final_embeddings()), ref.result_embed
        rows.append({"model": name, "check": "representation", "max rel diff": _rel(mine, theirs)})
        rows.append({"model": name, "check": "loss of one batch", "max rel diff": _rel(ours.loss(batch), ref_loss)})
    for r in rows:
        r["ok"] = r["max rel diff"] <= cfg.tolerance
        r["max rel diff"] = f"{r['max rel diff']:.1e}"
    print(format_table(rows))
    if not all(r["ok"] for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
