"""BEiT3: torchscale equivalence, official-checkpoint loading, padding, vision-language experts, fused CLS."""
from __future__ import annotations

import os

import pytest
import torch

from raymmrec.encoders import Beit3Config, EncoderConfig, create_encoder
from raymmrec.encoders.beit3 import load_official_checkpoint
from raymmrec.encoders.multiway import BEiT3
from raymmrec.errors import ConfigError


def _inputs(vocab: int = 1000, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(2, 3, 32, 32, generator=g)
    tokens = torch.randint(3, vocab, (2, 10), generator=g)
    pad = torch.zeros(2, 10, dtype=torch.bool)
    pad[1, 6:] = True
    image_mask = torch.zeros(2, 16, dtype=torch.bool)
    image_mask[:, ::3] = True
    return pixels, tokens, pad, image_mask


def _torchscale_beit3():
    """torchscale's BEiT3: `make venv` installs it, so CI must have it; elsewhere its absence skips the test."""
    try:
        import torchscale.model.BEiT3 as ts_model
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"torchscale is missing in CI ({exc}); `make venv` installs it (see the Makefile)")
        pytest.skip(f"torchscale is not installed ({exc}); `make venv` installs it")
    return ts_model


def test_same_weights_same_output_as_torchscale():
    ts_model = _torchscale_beit3()
    from torchscale.architecture.config import EncoderConfig as TsConfig

    torch.manual_seed(0)
    ours = BEiT3(vocab_size=1000, dim=64, depth=3, heads=4, mlp_ratio=2.0, img_size=32, patch_size=8).eval()
    ref = ts_model.BEiT3(TsConfig(
        img_size=32, patch_size=8, vocab_size=1000, multiway=True, layernorm_embedding=False, normalize_output=True,
        no_output_layer=True, encoder_embed_dim=64, encoder_attention_heads=4, encoder_ffn_embed_dim=128,
        encoder_layers=3)).eval()
    assert set(ours.state_dict()) == set(ref.state_dict())      # no key mapping needed
    ref.load_state_dict(ours.state_dict(), strict=True)
    pixels, tokens, pad, image_mask = _inputs()
    cases = [
        (dict(visual_tokens=pixels), dict(pixels=pixels)),
        (dict(textual_tokens=tokens, text_padding_position=pad), dict(text_tokens=tokens, text_padding_mask=pad)),
        (dict(visual_tokens=pixels, textual_tokens=tokens, text_padding_position=pad, vision_masked_position=image_mask),
         dict(pixels=pixels, text_tokens=tokens, text_padding_mask=pad, image_mask=image_mask)),
    ]
    with torch.no_grad():
        for ref_kw, our_kw in cases:
            expected = ref(**ref_kw)["encoder_out"]
            got, _ = ours(**our_kw)
            torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)


def test_official_checkpoint_loads_with_resized_positions_and_vl_experts(tmp_path):
    torch.manual_seed(1)
    # an "official" checkpoint: a 48 px model saved as {'model': state} with beit3.* keys and an extra head
    source = create_encoder(EncoderConfig(beit3=Beit3Config(img_size=48))).eval()
    state = dict(source.state_dict())
    state["head.weight"] = torch.zeros(3, 64)
    torch.save({"model": state}, tmp_path / "beit3_tiny.pth")

    target = create_encoder(EncoderConfig(beit3=Beit3Config(vl_layers=1))).eval()
    load_official_checkpoint(target, str(tmp_path / "beit3_tiny.pth"))
    loaded = target.state_dict()
    assert torch.equal(loaded["beit3.text_embed.weight"], state["beit3.text_embed.weight"])
    pos = loaded["beit3.encoder.embed_positions.A.weight"]
    assert pos.shape[0] == 16 + 1 + 2
    assert torch.equal(pos[:3], state["beit3.encoder.embed_positions.A.weight"][:3])   # offset slots + CLS kept
    top = "beit3.encoder.layers.1.ffn"
    assert torch.equal(loaded[f"{top}.C.fc1.weight"], state[f"{top}.B.fc1.weight"])   # V-L expert seeded from L

    wrong = create_encoder(EncoderConfig(beit3=Beit3Config(vocab_size=50000)))
    with pytest.raises(ConfigError, match="text_embed"):
        load_official_checkpoint(wrong, str(tmp_path / "beit3_tiny.pth"))


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(2)
    short = create_encoder(EncoderConfig(beit3=Beit3Config(context_length=16))).eval()
    long = create_encoder(EncoderConfig(beit3=Beit3Config(context_length=40))).eval()
    long.load_state_dict(short.state_dict())
    texts = ["soft cotton baby blanket", "stroller"]
    with torch.no_grad():
        a = short.encode_text(short.tokenizer(texts))
        b = long.encode_text(long.tokenizer(texts))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_vl_expert_serves_fused_input_only():
    torch.manual_seed(3)
    enc = create_encoder(EncoderConfig(beit3=Beit3Config(vl_layers=1))).eval()
    pixels, _, _, _ = _inputs()
    tokens = enc.tokenizer(["red rattle", "blue teether"])
    with torch.no_grad():
        image, text, fused = enc.encode_image(pixels), enc.encode_text(tokens), enc.encode_fused(pixels, tokens)
        enc.beit3.encoder.layers[1].ffn.C.fc2.weight.add_(0.5)
        assert torch.equal(enc.encode_image(pixels), image)
        assert torch.equal(enc.encode_text(tokens), text)
        assert not torch.allclose(enc.encode_fused(pixels, tokens), fused)
    assert fused.shape == (2, enc.fused_dim) and image.shape == (2, enc.embed_dim)


def test_heads_and_patch_features():
    enc = create_encoder(EncoderConfig(beit3=Beit3Config(head_dim=24))).eval()
    pixels, _, _, _ = _inputs()
    tokens = enc.tokenizer(["a", "b"])
    with torch.no_grad():
        assert enc.encode_image(pixels, normalize=True).norm(dim=-1).allclose(torch.ones(2))
        assert enc.encode_text(tokens).shape == (2, 24)
        assert enc.encode_image_patches(pixels).shape == (2, 16, enc.width)
        assert enc.encode_fused(pixels, tokens).shape == (2, enc.width)
    assert enc.logit_scale_param() is not None
