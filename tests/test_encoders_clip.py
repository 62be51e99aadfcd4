"""CLIP via open_clip: Long-CLIP stretch, config-only preprocessing, tokenizers, save / load of the stage output."""
from __future__ import annotations

import pytest
import torch

from raymmrec.encoders import (Beit3Config, ClipConfig, EncoderConfig, create_encoder, create_preprocess,
                               load_encoder, save_encoder, stretch_positions)
from raymmrec.encoders.tokenizers import load_hf_tokenizer
from raymmrec.errors import ConfigError


def test_long_clip_stretch_keeps_first_20_and_interpolates_the_rest():
    old = torch.randn(77, 8)
    new = stretch_positions(old)
    assert new.shape == (248, 8)
    assert torch.equal(new[:20], old[:20])
    for i in (0, 10, 55):
        base = 20 + 4 * i
        assert torch.equal(new[base], old[20 + i])
        torch.testing.assert_close(new[base + 2], (old[20 + i] + old[21 + i]) / 2)
        torch.testing.assert_close(new[base + 1], 0.75 * old[20 + i] + 0.25 * old[21 + i])
    # past the last position: extrapolated along the last step
    torch.testing.assert_close(new[-1], old[76] + 0.75 * (old[76] - old[75]))


def test_long_clip_model_reads_248_tokens():
    torch.manual_seed(0)
    short = create_encoder(EncoderConfig(kind="clip")).eval()
    long = create_encoder(EncoderConfig(kind="clip", clip=ClipConfig(long_text=True))).eval()
    assert long.tokenizer.context_length == 248
    pos = long.model.positional_embedding
    assert pos.shape[0] == 248 and long.model.attn_mask.shape == (248, 248)
    text = ["word " * 150, "short"]
    tokens = long.tokenizer(text)
    assert (tokens[0] != 0).sum() > 77
    with torch.no_grad():
        assert long.encode_text(tokens).shape == (2, long.embed_dim)
    assert short.tokenizer.context_length == 77


def test_long_clip_text_past_position_77_changes_the_embedding():
    torch.manual_seed(0)
    short = create_encoder(EncoderConfig(kind="clip")).eval()
    long = create_encoder(EncoderConfig(kind="clip", clip=ClipConfig(long_text=True))).eval()
    head = " ".join(["soft"] * 100)
    texts = [f"{head} {' '.join(['red'] * 40)}", f"{head} {' '.join(['blue'] * 40)}"]
    tokens = long.tokenizer(texts)
    differ = torch.nonzero(tokens[0] != tokens[1]).flatten()
    assert len(differ) > 0 and differ.min() > 77 and differ.max() < 248          # the texts differ only past CLIP's 77 positions
    with torch.no_grad():
        a, b = long.encode_text(tokens)
        assert (a - b).norm() > 1e-3 * a.norm()
        # the 77-token model cuts both texts to the same tokens: no difference there
        short_tokens = short.tokenizer(texts)
        assert torch.equal(short_tokens[0], short_tokens[1])
        torch.testing.assert_close(*short.encode_text(short_tokens))


def test_preprocess_without_model_matches_model():
    cfg = EncoderConfig(kind="clip", clip=ClipConfig(model="ViT-B-16", pretrained="openai"))
    pp = create_preprocess(cfg)
    assert (pp.image_size, pp.patch_size, pp.tokenizer.context_length) == (224, 16, 77)
    assert pp.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    tiny = create_preprocess(EncoderConfig(kind="clip"))
    model = create_encoder(EncoderConfig(kind="clip"))
    assert (tiny.image_size, tiny.patch_size) == (model.preprocess.image_size, model.preprocess.patch_size) == (32, 8)


def test_bad_model_name_is_one_line_config_error():
    with pytest.raises(ConfigError, match="clip.model 'ViT-Nope'"):
        create_encoder(EncoderConfig(kind="clip", clip=ClipConfig(model="ViT-Nope")))
    with pytest.raises(ConfigError, match="not a known tag"):
        create_encoder(EncoderConfig(kind="clip", clip=ClipConfig(pretrained="no-such-tag")))


@pytest.mark.parametrize("kind", ["clip", "beit3"])
def test_saved_encoder_reloads_and_reproduces_outputs(tmp_path, kind):
    torch.manual_seed(4)
    cfg = EncoderConfig(kind=kind, clip=ClipConfig(long_text=True))
    enc = create_encoder(cfg).eval()
    for p in enc.parameters():              # move off the init so a fresh model cannot match by accident
        p.data.add_(0.01 * torch.randn_like(p))
    pixels = torch.randn(2, 3, 32, 32)
    tokens = enc.tokenizer(["wooden toy train", "bath towel"])
    out = save_encoder(enc, tmp_path / "enc")
    back = load_encoder(out)
    with torch.no_grad():
        torch.testing.assert_close(back.encode_image(pixels), enc.encode_image(pixels))
        torch.testing.assert_close(back.encode_text(tokens), enc.encode_text(tokens))
        if enc.supports_fused:
            torch.testing.assert_close(back.encode_fused(pixels, tokens), enc.encode_fused(pixels, tokens))
    # a stage-2 dir also works as the starting weights of another run
    again = create_encoder(EncoderConfig(kind=kind, clip=ClipConfig(long_text=True, pretrained=str(out)),
                                         beit3=Beit3Config(checkpoint=str(out)))).eval()
    with torch.no_grad():
        torch.testing.assert_close(again.encode_image(pixels), enc.encode_image(pixels))


def test_hf_sentencepiece_style_tokenizer_from_local_dir(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "soft", "baby", "blanket", "<mask>"])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>")
    fast.save_pretrained(tmp_path / "xlmr")
    tok = load_hf_tokenizer(str(tmp_path / "xlmr"), context_length=6)
    ids = tok(["soft baby blanket", "baby"])
    assert ids.shape == (2, 6) and tok.mask_id == 7 and tok.pad_id == 1
    assert tok.padding_mask(ids)[1].tolist() == [False, True, True, True, True, True]
    enc = create_encoder(EncoderConfig(beit3=Beit3Config(tokenizer=str(tmp_path / "xlmr"), vocab_size=16)))
    assert enc.beit3.text_embed.weight.shape[0] == 16
    with pytest.raises(ConfigError, match="cannot load"):
        load_hf_tokenizer(str(tmp_path / "missing"), 8)
