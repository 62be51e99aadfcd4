"""What a search ends with: one row per trial, the best trial per model, a table and a learning-curve plot."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from raymmrec.recsys.report import format_table
from raymmrec.tune.trial import PRUNED, search_metric, stop_reason


@dataclass
class TrialRow:
    """One trial of a search: its sampled config, why it stopped, and its metrics at its best valid epoch."""

    model: str
    trial_id: str
    config: dict[str, Any]
    stop_reason: str
    epochs: int
    best_epoch: int
    score: float                                   # best valid value of the search metric
    valid: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    curve: list[tuple[int, float]] = field(default_factory=list)   # (epoch, valid metric) per evaluated epoch
    checkpoint: Any = field(default=None, repr=False)               # ray.tune.Checkpoint holding best.pt
    error: str | None = None
    nodes: list[str] = field(default_factory=list)  # Ray node ids the trial's epochs ran on, in order


def trial_rows(model: str, grid: Any, valid_metric: str) -> list[TrialRow]:
    """Rows of one model's Ray Tune ResultGrid, in trial order (ties on the score go to the earlier trial)."""
    rows = []
    for result in grid:
        last = dict(result.metrics or {})
        rows.append(TrialRow(
            model=model, trial_id=str(last.get("trial_id") or result.path.rsplit("/", 1)[-1]),
            config=dict(result.config or {}),
            stop_reason="error" if result.error else stop_reason(last),
            epochs=int(last.get("epoch", 0)), best_epoch=int(last.get("best_epoch", 0)),
            score=float(last.get(search_metric(valid_metric), 0.0)),
            valid=_prefixed(last, "best/valid/"), test=_prefixed(last, "best/test/"),
            curve=_curve(result.metrics_dataframe, f"valid/{valid_metric}"),
            checkpoint=result.checkpoint, error=str(result.error).splitlines()[0] if result.error else None,
            nodes=_nodes(result.metrics_dataframe)))
    return sorted(rows, key=lambda r: r.trial_id)


def _prefixed(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {k[len(prefix):]: float(v) for k, v in metrics.items() if k.startswith(prefix) and v is not None}


def _nodes(frame: Any) -> list[str]:
    if frame is None or "node_id" not in getattr(frame, "columns", ()):
        return []
    return list(dict.fromkeys(str(n) for n in frame["node_id"].dropna()))


def _curve(frame: Any, key: str) -> list[tuple[int, float]]:
    if frame is None or key not in getattr(frame, "columns", ()) or "epoch" not in frame.columns:
        return []
    # A resumed trial may report an epoch twice; the later report wins.
    frame = frame[["epoch", key]].dropna().drop_duplicates("epoch", keep="last").sort_values("epoch")
    return [(int(e), float(v)) for e, v in zip(frame["epoch"], frame[key])]


def best_per_model(rows: Sequence[TrialRow]) -> dict[str, TrialRow]:
    """The trial with the highest best-valid score of each model (first trial wins ties)."""
    best: dict[str, TrialRow] = {}
    for row in rows:
        if row.error is None and (row.model not in best or row.score > best[row.model].score):
            best[row.model] = row
    return dict(sorted(best.items(), key=lambda kv: -kv[1].score))


def config_text(config: dict[str, Any]) -> str:
    """A compact `key=value` rendering of a sampled config."""
    return " ".join(f"{k}={_short(v)}" for k, v in sorted(config.items())) or "(defaults)"


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def leaderboard_rows(rows: Sequence[TrialRow], ks: Sequence[int]) -> list[dict[str, Any]]:
    """Per model (best first): a valid and a test row at its best trial's best epoch, with its cost."""
    out = []
    epochs = Counter()
    for r in rows:
        epochs[r.model] += r.epochs
    trials = Counter(r.model for r in rows)
    for model, best in best_per_model(rows).items():
        for split, metrics in (("valid", best.valid), ("test", best.test)):
            line: dict[str, Any] = {"model": model if split == "valid" else "", "split": split}
            for name in ("recall", "ndcg"):
                for k in ks:
                    line[f"{name}@{k}"] = metrics.get(f"{name}@{k}", float("nan"))
            first = split == "valid"
            line.update({"best_epoch": best.best_epoch if first else "", "epochs": best.epochs if first else "",
                         "trials": trials[model] if first else "", "trial_epochs": epochs[model] if first else "",
                         "config": config_text(best.config) if first else ""})
            out.append(line)
    return out


def trials_table(rows: Sequence[TrialRow], ks: Sequence[int]) -> list[dict[str, Any]]:
    """Every trial as a flat record (for MLflow and CSV)."""
    out = []
    for r in sorted(rows, key=lambda r: (r.model, -r.score)):
        line: dict[str, Any] = {"model": r.model, "trial_id": r.trial_id, "config": config_text(r.config),
                                "stop_reason": r.stop_reason, "epochs": r.epochs, "best_epoch": r.best_epoch}
        for split, metrics in (("valid", r.valid), ("test", r.test)):
            for name in ("recall", "ndcg"):
                for k in ks:
                    line[f"{split}_{name}@{k}"] = metrics.get(f"{name}@{k}", float("nan"))
        line["nodes"] = " ".join(r.nodes)
        out.append(line)
    return out


def summary_lines(rows: Sequence[TrialRow]) -> list[str]:
    """Trial counts, trial-epochs and stop reasons per model."""
    out = []
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        reasons = Counter(r.stop_reason for r in mine)
        out.append(f"{model}: {len(mine)} trial{'' if len(mine) == 1 else 's'}, {sum(r.epochs for r in mine)} trial-epochs, "
                   + ", ".join(f"{n} {reason}" for reason, n in reasons.most_common()))
    return out


def leaderboard_text(rows: Sequence[TrialRow], ks: Sequence[int]) -> str:
    """The summary lines and the per-model table a person reads at the end of a search."""
    return "\n".join([*summary_lines(rows), "", "leaderboard: each model's best trial, metrics at its best valid epoch",
                      format_table(leaderboard_rows(rows, ks))])


def curves_figure(rows: Sequence[TrialRow], valid_metric: str):
    """Figure: valid `valid_metric` over epochs for every trial, a panel per model, pruned trials dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in rows)) or ["(none)"]
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), sharey=True, squeeze=False)
    best = best_per_model(rows)
    for ax, model in zip(axes[0], models):
        for r in (r for r in rows if r.model == model and r.curve):
            epochs, values = zip(*r.curve)
            is_best = best.get(model) is r
            ax.plot(epochs, values, linestyle="--" if r.stop_reason == PRUNED else "-",
                    linewidth=2.5 if is_best else 1.0, alpha=1.0 if is_best else 0.6,
                    label=f"best: {config_text(r.config)}" if is_best else None)
        ax.set_title(model)
        ax.set_xlabel("epoch")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"valid {valid_metric} (dashed: stopped by ASHA)")
    fig.tight_layout()
    return fig
