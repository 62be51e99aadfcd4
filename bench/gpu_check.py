"""The project's pure-torch paths on one GPU, without Ray or MLflow (bench/gpu_check.sh runs it).

  1. backbones: LightGCN, FREEDOM, MGCN trained by the project's trainer on CUDA at a Baby-shaped planted
     set (a few epochs) and one epoch at an Electronics-shaped one: s/epoch, eval s, peak GPU memory;
  2. encoders: one bf16 DeepSpeed engine in this single process (the pre-training model of stage 2:
     CLIP ViT-B/16 + ITC, BEiT3-base + MLM/MIM), timed training steps: samples/s, peak memory;
  3. extraction: stage 3's EncodeItems actor class with CLIP ViT-L/14 on 224² images: items/s.

Weights are random (the GPU machine has no network): the timings are those of trained weights.
`--cpu-smoke` runs the same code on CPU at tiny sizes (tiny encoders, fp32, gloo) to prove it end to end.
Ray and MLflow are blocked from import throughout: the compute core must not need them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BLOCKED = ("ray", "mlflow")


class _BlockImports:
    """A meta-path finder refusing the packages the GPU machine does not have."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in the GPU check (the compute core must not import it)")
        return None


sys.meta_path.insert(0, _BlockImports())

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _gpu() -> bool:
    return torch.cuda.is_available()


def _sync() -> None:
    if _gpu():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    if _gpu():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb() -> float:
    return round(torch.cuda.max_memory_allocated() / 1024 ** 3, 2) if _gpu() else 0.0


def _record(results: list[dict], row: dict, out: Path | None) -> None:
    results.append(row)
    print(json.dumps(row), flush=True)
    if out is not None:
        (out / "gpu_check.json").write_text(json.dumps(results, indent=1))


def _guarded(results: list[dict], out: Path | None, what: dict, fn: Callable[[], dict]) -> None:
    """Run one measurement; a failure is recorded with its error and the check goes on."""
    t0 = time.perf_counter()
    try:
        row = {**what, **fn(), "ok": True}
    except Exception as exc:  # noqa: BLE001 - one broken path must not hide the others' figures
        traceback.print_exc()
        row = {**what, "ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    _reset_peak()
    _record(results, row, out)


# ---------------------------------------------------------------- backbones

def backbone_run(model: str, data: Any, epochs: int, device: str) -> dict:
    """Train `model` for `epochs` with the project's trainer; s/epoch (median), eval s, peak memory, Recall@20."""
    from raymmrec.recsys.trainer import TrainerConfig, train_model

    _reset_peak()
    cfg = TrainerConfig(epochs=epochs, patience=epochs, device=device, seed=999, checkpoint_every=0)
    t0 = time.perf_counter()
    r = train_model(model, {}, cfg, data)
    total = time.perf_counter() - t0
    train_s = [h["train_seconds"] for h in r.history]
    eval_s = [h["eval_seconds"] for h in r.history if "eval_seconds" in h]
    return {"epochs": r.epochs_run, "s_per_epoch": round(statistics.median(train_s), 3),
            "first_epoch_s": round(train_s[0], 3), "eval_s": round(statistics.median(eval_s), 3) if eval_s else None,
            "build_and_train_s": round(total, 1), "peak_gpu_gb": _peak_gb(),
            "test_recall@20": round(r.test_at_best.get("recall@20", float("nan")), 4)}


def backbones(results: list[dict], out: Path | None, smoke: bool, baby_epochs: int) -> None:
    from raymmrec.recsys.planted_data import planted_interactions

    device = "cuda" if _gpu() else "cpu"
    dims = {"text": 32, "image": 48} if smoke else {"text": 384, "image": 4096}
    plan = [("tiny", 2)] if smoke else [("baby", baby_epochs), ("electronics", 1)]
    for size, epochs in plan:
        t0 = time.perf_counter()
        data = planted_interactions(size, dims=dims, seed=0).to_data(f"planted-{size}")
        made = round(time.perf_counter() - t0, 1)
        for model in ("lightgcn", "freedom", "mgcn"):
            _guarded(results, out, {"check": "backbone", "model": model, "size": size, "device": device,
                                    "users": data.n_users, "items": data.n_items, "train": data.n_train,
                                    "data_s": made},
                     lambda: backbone_run(model, data, epochs, device))


# ---------------------------------------------------------------- encoders under DeepSpeed

def _init_single_process_group() -> None:
    """A world of one (DeepSpeed needs a process group; Ray Train makes it on a cluster)."""
    import deepspeed

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    deepspeed.init_distributed(dist_backend="nccl" if _gpu() else "gloo", verbose=False)


def _pretrain_batch(encoder: Any, batch: int, masked: bool, seed: int) -> dict[str, torch.Tensor]:
    """Random images and tokenized item-like texts, masked by stage 2's own masking for MLM / MIM."""
    from raymmrec.pretrain.pairs import MaskSpec, mask_batch

    pp = encoder.preprocess
    g = torch.Generator().manual_seed(seed)
    words = ["usb", "cable", "stroller", "soft", "black", "pack", "of", "two", "wireless", "charger", "baby", "blue"]
    texts = [" ".join(words[int(j)] for j in torch.randint(len(words), (24,), generator=g)) for _ in range(batch)]
    tokens = pp.tokenizer(texts)
    out = {"pixels": torch.randn(batch, 3, pp.image_size, pp.image_size, generator=g), "tokens": tokens}
    if masked:
        n_patches = (pp.image_size // pp.patch_size) ** 2
        mlm, labels, image_mask = mask_batch(tokens, pp, n_patches, MaskSpec(0.15, 0.4),
                                             [str(i) for i in range(batch)], seed)
        out.update(mlm_tokens=torch.from_numpy(mlm), mlm_labels=torch.from_numpy(labels),
                   image_mask=torch.from_numpy(image_mask))
    return out


def encoder_step(cfg: Any, objective: str, batch: int, steps: int, zero_stage: int) -> dict:
    """Timed DeepSpeed steps of stage 2's PretrainModel for `cfg`; samples/s after two warm-up steps."""
    from raymmrec.encoders import create_encoder
    from raymmrec.deepspeed_setup import (DeepSpeedConfig, OptimConfig, build_ds_config, compute_dtype,
                                                create_engine, select_accelerator)
    from raymmrec.pretrain.objectives import LossConfig, PretrainModel

    on_gpu = select_accelerator()
    _init_single_process_group()
    _reset_peak()
    torch.manual_seed(0)
    encoder = create_encoder(cfg)
    n_params = sum(p.numel() for p in encoder.parameters())
    model = PretrainModel(encoder, objective, LossConfig())
    # torch's AdamW: DeepSpeed's fused Adam would JIT-compile CUDA code first (minutes, and a toolchain match)
    ds = DeepSpeedConfig(zero_stage=zero_stage, precision="bf16" if on_gpu else "fp32", grad_clip=1.0,
                         extra={"optimizer": {"params": {"torch_adam": True}}})
    ds_config = build_ds_config(ds, OptimConfig(warmup_steps=1), batch, steps + 2, on_gpu)
    engine = create_engine(model, ds_config, 0.05)
    dtype = compute_dtype(ds_config)
    host = _pretrain_batch(encoder, batch, objective != "itc", seed=0)
    inputs = {k: v.to(engine.device, dtype) if v.is_floating_point() else v.to(engine.device) for k, v in host.items()}
    losses = []
    for i in range(steps + 2):
        if i == 2:
            _sync()
            t0 = time.perf_counter()
        parts = engine(inputs)
        engine.backward(parts["loss"])
        engine.step()
        losses.append(float(parts["loss"].detach()))
    _sync()
    seconds = time.perf_counter() - t0
    row = {"params_m": round(n_params / 1e6, 1), "batch": batch, "steps": steps, "precision": str(dtype),
           "zero_stage": zero_stage, "samples_per_s": round(batch * steps / seconds, 1),
           "s_per_step": round(seconds / steps, 4), "peak_gpu_gb": _peak_gb(),
           "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4)}
    engine.destroy() if hasattr(engine, "destroy") else None
    del engine, model, encoder
    return row


def encoders(results: list[dict], out: Path | None, smoke: bool, steps: int, zero_stage: int) -> None:
    from raymmrec.encoders import EncoderConfig
    from raymmrec.encoders.beit3 import Beit3Config
    from raymmrec.encoders.clip import ClipConfig

    plan = [("clip", EncoderConfig(kind="clip", clip=ClipConfig(model="raymmrec-tiny-clip")), "itc", 8),
            ("beit3", EncoderConfig(kind="beit3", beit3=Beit3Config(size="tiny")), "mlm_mim", 8)] if smoke else \
           [("clip ViT-B-16", EncoderConfig(kind="clip", clip=ClipConfig(model="ViT-B-16")), "itc", 128),
            ("beit3 base", EncoderConfig(kind="beit3", beit3=Beit3Config(size="base")), "mlm_mim", 64)]
    for name, cfg, objective, batch in plan:
        _guarded(results, out, {"check": "encoder_step", "encoder": name, "objective": objective},
                 lambda: encoder_step(cfg, objective, batch, steps, zero_stage))


# ---------------------------------------------------------------- feature extraction

def extraction_run(model: str, batch: int, batches: int) -> dict:
    """Stage 3's EncodeItems (the Ray Data actor class, called directly) on random 224² items: items/s."""
    from raymmrec.encoders import EncoderConfig
    from raymmrec.encoders.clip import ClipConfig
    from raymmrec.encoders.source import EncoderSource
    from raymmrec.features.inference import IMAGE_OK, EncodeItems

    _reset_peak()
    cfg = EncoderConfig(kind="clip", clip=ClipConfig(model=model))
    actor = EncodeItems(EncoderSource(spec=model, config=cfg, checkpoint_hash="random:gpu-check"), "clip")
    pp = actor.encoder.preprocess
    rng = np.random.default_rng(0)
    host = {"item": np.arange(batch), "image_status": np.full(batch, IMAGE_OK), "text_ok": np.ones(batch, bool),
            "pixels": rng.standard_normal((batch, 3, pp.image_size, pp.image_size), dtype=np.float32),
            "tokens": pp.tokenizer([f"item {i} wireless charger black" for i in range(batch)]).numpy()}
    actor(host)                              # warm-up: kernels chosen, memory pooled
    _sync()
    t0 = time.perf_counter()
    for _ in range(batches):
        got = actor(host)
    _sync()
    seconds = time.perf_counter() - t0
    assert got["image"].shape == (batch, actor.encoder.embed_dim) and np.isfinite(got["image"]).all()
    return {"batch": batch, "batches": batches, "items_per_s": round(batch * batches / seconds, 1),
            "embed_dim": actor.encoder.embed_dim, "peak_gpu_gb": _peak_gb(), "dtype": "fp32 (the actor's own)"}


def extraction(results: list[dict], out: Path | None, smoke: bool, batches: int) -> None:
    model, batch = ("raymmrec-tiny-clip", 16) if smoke else ("ViT-L-14", 256)
    _guarded(results, out, {"check": "extract", "encoder": model}, lambda: extraction_run(model, batch, batches))


def environment() -> dict:
    """Versions and the device, for the closing note."""
    row: dict[str, Any] = {"check": "environment", "python": sys.version.split()[0], "torch": torch.__version__,
                           "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0) if _gpu() else "cpu"}
    for name in ("deepspeed", "open_clip", "transformers", "timm", "torch_geometric", "scipy", "pyarrow"):
        try:
            row[name] = getattr(__import__(name), "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - report what is missing, do not stop
            row[name] = f"missing ({type(exc).__name__})"
    for name in BLOCKED:
        try:
            __import__(name)
            row[f"{name}_blocked"] = False
        except ImportError:
            row[f"{name}_blocked"] = True
    return row


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU: prove the script end to end")
    p.add_argument("--only", default="backbones,encoders,extraction", help="comma-separated parts to run")
    p.add_argument("--out", default="", help="folder for gpu_check.json (rewritten after every measurement)")
    p.add_argument("--baby-epochs", type=int, default=10)
    p.add_argument("--encoder-steps", type=int, default=10)
    p.add_argument("--zero-stage", type=int, default=2)
    p.add_argument("--extract-batches", type=int, default=8)
    args = p.parse_args(argv)
    smoke = args.cpu_smoke
    if not smoke and not _gpu():
        print("no CUDA device: run on a GPU machine, or pass --cpu-smoke", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if _gpu():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    results: list[dict] = []
    _record(results, environment(), out)
    parts = set(args.only.split(","))
    started = time.perf_counter()
    if "backbones" in parts:
        backbones(results, out, smoke, 2 if smoke else args.baby_epochs)
    if "encoders" in parts:
        encoders(results, out, smoke, 2 if smoke else args.encoder_steps, args.zero_stage)
    if "extraction" in parts:
        extraction(results, out, smoke, 2 if smoke else args.extract_batches)
    print(f"\n{'check':13} {'what':16} {'size':12} figures")
    for r in results[1:]:
        what = r.get("model") or r.get("encoder", "")
        figures = {k: v for k, v in r.items() if k not in ("check", "model", "encoder", "size", "ok")}
        print(f"{r['check']:13} {what:16} {r.get('size', ''):12} {'' if r['ok'] else 'FAILED '}{figures}")
    print(f"total {time.perf_counter() - started:.0f}s")
    return 0 if all(r.get("ok", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
