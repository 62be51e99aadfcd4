"""Accuracy parity with MMRec: the same MMRec folder, hyper-parameters and seeds through both implementations.

    python bench/mmrec_parity.py mmrec_src=/path/to/MMRec/src [models='[lightgcn, freedom]'] [seeds='[999, 1, 2]']
    python bench/mmrec_parity.py mmrec_src=... models='[lightgcn]' mirror_gradient=true   # both with Mirror Gradient

MMRec runs unmodified through bench/mmrec_runner.py. Both sides run single-threaded (fair, and robust
on shared cores). The table gives each side's mean test Recall@20 / NDCG@20 at its best validation
epoch over the seeds and the relative difference.
"""
from __future__ import annotations

import copy

import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmrec_runner import run_mmrec, summary_runs, test_metrics_per_seed  # noqa: E402  (bench/ is the script's folder)

from raymmrec.config import load_config  # noqa: E402
from raymmrec.errors import ConfigError, exit_on_user_error  # noqa: E402
from raymmrec.recsys.report import format_table  # noqa: E402


# MMRec-only settings (no field on our side), passed to MMRec as plain values
MMREC_ONLY_PARAMS: dict[str, dict[str, Any]] = {"dragon": {"aggr_mode": "add"}}


@dataclass
class ParityConfig:
    """Both implementations on one dataset, one setting per model, several seeds."""

    mmrec_src: str = ""                      # MMRec's src/ folder (holds main.py, configs/, utils/)
    data: str = ""                           # dataset dir; empty: raymmrec.data.synth `small`
    work: str = "/tmp/raymmrec-parity"
    models: list[str] = field(default_factory=lambda: ["bpr", "lightgcn", "vbpr", "freedom"])
    params: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "bpr": {"reg_weight": 1e-4}, "lightgcn": {"n_layers": 2, "reg_weight": 1e-4}, "vbpr": {"reg_weight": 1e-4},
        "freedom": {"dropout": 0.8, "reg_weight": 1e-4},
        "lattice": {"reg_weight": 1e-4}, "bm3": {"n_layers": 1, "reg_weight": 0.1, "dropout": 0.3},
        "mgcn": {"cl_loss": 1e-3}, "dragon": {"reg_weight": 1e-3},
        # every list-valued key of the model's yaml is pinned: MMRec leaves one outside `hyper_parameters` a list
        "smore": {"n_ui_layers": 3, "reg_weight": 1e-4, "image_knn_k": 10, "text_knn_k": 10, "dropout_rate": 0.0},
        "pgl": {"dropout": 0.2, "reg_weight": 0.0, "mode": "local"}, "mvgae": {"beta": 0.1},
        "damrs": {"neighbor_weight": 1e-3, "kl_weight": 1.0, "n_mm_layers": 1, "n_ui_layers": 2},
        "layergcn": {"n_layers": 4, "reg_weight": 1e-3, "dropout": 0.1},
        "selfcf": {"n_layers": 2, "dropout": 0.1, "reg_weight": 1e-3}, "itemknncbf": {"knn_k": 10, "shrink": 10.0},
        "mmgcf": {"n_ui_layers": 2, "reg_weight": 1e-3, "dropout": 0.5, "fusion_mode": "mean", "weighting": "equal"},
        "lgmrec": {"n_ui_layers": 2, "n_mm_layers": 2, "n_hyper_layer": 1, "hyper_num": 4, "keep_rate": 0.5,
                   "alpha": 0.3, "cl_weight": 1e-4, "reg_weight": 1e-6}})
    mmrec_params: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(MMREC_ONLY_PARAMS))
    seeds: list[int] = field(default_factory=lambda: [999, 1, 2])
    epochs: int = 60
    batch_size: int = 512
    lr: float = 1e-3
    patience: int = 20
    mirror_gradient: bool = False            # both sides with Mirror Gradient (MMRec's --mg) at `mg`
    mg: dict[str, float] = field(default_factory=lambda: {"alpha1": 1.0, "alpha2": 0.1, "beta": 3})


def _mmrec_folder(cfg: ParityConfig) -> Path:
    from raymmrec.data.mmrec import export_mmrec
    from raymmrec.data.schema import DatasetDir

    work = Path(cfg.work)
    folder = work / "data" / "parity"
    if not (folder / "parity.inter").is_file():
        if cfg.data:
            ds = DatasetDir.at(cfg.data)
        else:
            from raymmrec.data.synth import SynthConfig, generate_dataset

            ds = generate_dataset(SynthConfig(size="small", seed=0), work / "synth-small")
        export_mmrec(ds, folder, "parity", feature_set="raw")
    return folder


def write_reference_inputs(mmrec_src: str, model: str, folder: Path) -> dict[str, Any]:
    """Files MMRec's constructor reads besides the folder's own (DRAGON's user graph, by MMRec's preprocessing;
    DA-MRS's item graph, by its repo's recipe), and the config keys naming them."""
    from step_parity_new_backbones import write_damrs_item_graph, write_mmrec_user_graph

    from raymmrec.recsys.interaction_data import InteractionData

    if model == "dragon":
        if not (folder / "user_graph_dict.npy").is_file():
            write_mmrec_user_graph(InteractionData.from_mmrec_folder(folder), folder, mmrec_src)
        return {"user_graph_dict_file": "user_graph_dict.npy"}
    if model == "damrs" and not (folder / "item_graph_dict_2.npy").is_file():
        write_damrs_item_graph(InteractionData.from_mmrec_folder(folder), folder, mmrec_src)
    return {}


def mmrec_run_config(mmrec_src: str, model: str, folder: Path, params: dict[str, Any], *, seeds: list[int],
                     epochs: int, batch_size: int, lr: float, patience: int,
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """MMRec's run config for `model` on `folder` with our hyper-parameters and trainer settings."""
    # MMRec crosses every key of its yaml's `hyper_parameters`: narrow it to our numbers (seed is added by
    # MMRec); words (MMGCF's fusion_mode) and MMRec-only settings go in as plain values. learning_rate is
    # always given: DA-MRS's yaml leaves it a list outside hyper_parameters, which MMRec's optimizer refuses.
    numbers = {k: v for k, v in params.items() if isinstance(v, (int, float))}
    words = {k: v for k, v in params.items() if k not in numbers}
    return {"seed": list(seeds), "epochs": epochs, "train_batch_size": batch_size, "learning_rate": lr,
            "stopping_step": patience, "hyper_parameters": list(numbers), **{k: [v] for k, v in numbers.items()},
            **words, **MMREC_ONLY_PARAMS.get(model, {}), **(extra or {}),
            **write_reference_inputs(mmrec_src, model, folder)}


def run_mmrec_seeds(cfg: ParityConfig, model: str, folder: Path) -> dict[int, dict[str, float]]:
    """Train `model` with MMRec over all seeds; its test metrics per seed."""
    config = mmrec_run_config(cfg.mmrec_src, model, folder, cfg.params.get(model, {}), seeds=cfg.seeds,
                              epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience,
                              extra={**(cfg.mg if cfg.mirror_gradient else {}), **cfg.mmrec_params.get(model, {})})
    params = {k: config[k][0] for k in config["hyper_parameters"]}     # the numbers MMRec crosses
    mg = "-mg" if cfg.mirror_gradient else ""
    previous = Path(cfg.work) / f"mmrec-{model}{mg}-{folder.name}.out"      # run_mmrec's transcript
    if previous.is_file():
        runs = summary_runs(previous.read_text())
        # reused only when it ran exactly these seeds with these hyper-parameters (MMRec's summary does not
        # print epochs, batch size or lr: a changed trainer setting needs a new `work` dir)
        same = all(set(p) == {"seed", *params} and all(float(p[k]) == float(v) for k, v in params.items())
                   for p, _ in runs)
        if same and sorted(int(p["seed"]) for p, _ in runs) == sorted(cfg.seeds):
            print(f"MMRec {model}: reusing the finished run in {previous} (delete it to rerun)", flush=True)
            return test_metrics_per_seed(previous.read_text())
    results = test_metrics_per_seed(run_mmrec(cfg.mmrec_src, model, folder, config, Path(cfg.work),
                                              mirror_gradient=cfg.mirror_gradient).output)
    if len(results) != len(cfg.seeds):
        raise RuntimeError(f"MMRec {model}: found results for seeds {sorted(results)}, expected {cfg.seeds}")
    return results


def run_ours(cfg: ParityConfig, model: str, folder: Path) -> dict[int, dict[str, float]]:
    """Train `model` with raymmrec's trainer over all seeds; test metrics at the best validation epoch."""
    from raymmrec.recsys.interaction_data import InteractionData
    from raymmrec.recsys.trainer import TrainerConfig, train_model

    data = InteractionData.from_mmrec_folder(folder)
    out = {}
    for seed in cfg.seeds:
        trainer = TrainerConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience,
                                seed=seed, num_threads=1, mirror_gradient=cfg.mirror_gradient,
                                mg_alpha1=cfg.mg["alpha1"], mg_alpha2=cfg.mg["alpha2"], mg_beta=int(cfg.mg["beta"]))
        out[seed] = train_model(model, cfg.params.get(model, {}), trainer, data).test_at_best
    return out


@exit_on_user_error
def main(argv: list[str]) -> None:
    cfg = load_config(ParityConfig, argv)
    if not (Path(cfg.mmrec_src) / "utils" / "quick_start.py").is_file():
        raise ConfigError(f"mmrec_src '{cfg.mmrec_src}' is not MMRec's src folder (no utils/quick_start.py)")
    Path(cfg.work).mkdir(parents=True, exist_ok=True)
    folder = _mmrec_folder(cfg)
    rows = []
    for model in cfg.models:
        theirs, ours = run_mmrec_seeds(cfg, model, folder), run_ours(cfg, model, folder)
        row: dict[str, Any] = {"model": model, "seeds": len(cfg.seeds)}
        for metric in ("recall@20", "ndcg@20"):
            a = [theirs[s][metric] for s in cfg.seeds]
            b = [ours[s][metric] for s in cfg.seeds]
            row[f"MMRec {metric}"] = f"{statistics.mean(a):.4f}±{statistics.pstdev(a):.4f}"
            row[f"ours {metric}"] = f"{statistics.mean(b):.4f}±{statistics.pstdev(b):.4f}"
            row[f"Δ {metric}"] = f"{100 * (statistics.mean(b) / statistics.mean(a) - 1):+.1f}%"
        rows.append(row)
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(format_table(rows))
    (Path(cfg.work) / "parity.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
