"""DeepSpeed ZeRO-3 in one process: the consolidated fp32 checkpoint rebuilds an encoder with the same outputs."""
from __future__ import annotations

import os
import socket

import pytest
import torch

from raymmrec.deepspeed_setup import (DeepSpeedConfig, OptimConfig, build_ds_config, consolidated_state_dict,
                                      create_engine)
from raymmrec.encoders import EncoderConfig, create_encoder, load_encoder, save_encoder
from raymmrec.pretrain.objectives import LossConfig, PretrainModel
from raymmrec.pretrain.pairs import MaskSpec, encode_pairs


@pytest.fixture(scope="module")
def single_rank_group():
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _pairs(cfg: EncoderConfig, masks: MaskSpec | None) -> dict[str, torch.Tensor]:
    import io

    import numpy as np
    from PIL import Image

    images = []
    for i in range(8):
        buf = io.BytesIO()
        Image.new("RGB", (40, 40), (30 * i, 200 - 20 * i, 90)).save(buf, format="PNG")
        images.append(buf.getvalue())
    batch = {"key": np.array([str(i) for i in range(8)], dtype=object),
             "text": np.array([f"item {i} soft toy in colour {i}" for i in range(8)], dtype=object),
             "image": np.array(images, dtype=object)}
    return {k: torch.from_numpy(v) for k, v in encode_pairs(batch, cfg, masks, False, 0, None).items()}


@pytest.mark.parametrize("kind,objective", [("beit3", "itc_mlm_mim"), ("clip", "itc")])
def test_zero3_checkpoint_consolidates_to_an_encoder_with_the_same_outputs(single_rank_group, tmp_path, kind,
                                                                            objective):
    torch.manual_seed(0)
    cfg = EncoderConfig(kind=kind)
    model = PretrainModel(create_encoder(cfg), objective, LossConfig())
    ds = build_ds_config(DeepSpeedConfig(zero_stage=3), OptimConfig(lr=1e-3, warmup_steps=1), micro_batch=8,
                         total_steps=4, on_gpu=False)
    engine = create_engine(model, ds, weight_decay=0.05)
    batch = _pairs(cfg, MaskSpec(0.15, 0.4) if "mlm" in objective else None)
    losses = []
    for _ in range(4):
        parts = engine(batch)
        engine.backward(parts["loss"])
        engine.step()
        losses.append(float(parts["loss"].detach()))
    # warm-up starts at lr 0, so the weights move from the third step on
    assert engine.global_steps == 4 and losses[-1] != losses[0]
    engine.eval()
    encoder = engine.module.encoder
    with torch.no_grad():
        image = encoder.encode_image(batch["pixels"]).clone()
        text = encoder.encode_text(batch["tokens"]).clone()
        fused = encoder.encode_fused(batch["pixels"], batch["tokens"]).clone() if encoder.supports_fused else None
    engine.save_checkpoint(str(tmp_path / "ckpt"), tag="step3")

    state = consolidated_state_dict(tmp_path / "ckpt")
    enc_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    assert all(v.dtype == torch.float32 for v in enc_state.values() if v.is_floating_point())
    out = save_encoder(create_encoder(cfg, load_weights=False), tmp_path / "enc", enc_state)
    back = load_encoder(out)
    with torch.no_grad():
        torch.testing.assert_close(back.encode_image(batch["pixels"]), image, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(back.encode_text(batch["tokens"]), text, atol=1e-5, rtol=1e-5)
        if fused is not None:
            torch.testing.assert_close(back.encode_fused(batch["pixels"], batch["tokens"]), fused, atol=1e-5, rtol=1e-5)
