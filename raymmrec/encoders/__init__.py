"""Stage-2 encoders: CLIP (open_clip, Long-CLIP) and BEiT3 (multiway transformer) behind one protocol.

    enc = load_encoder("runs/pretrain/<run>/encoder")          # a stage-2 output dir (encoder.pt + encoder.json)
    enc = create_encoder(EncoderConfig(kind="clip", clip=ClipConfig(model="ViT-B-16", pretrained="openai")))
    pp = enc.preprocess                      # or create_preprocess(cfg): no model needed, for CPU data tasks
    pixels = torch.stack([pp.image_transform(pil_image), ...])   # [B, 3, S, S]
    tokens = pp.tokenizer(["title. brand. categories. description", ...])   # [B, L] int64
    enc.encode_image(pixels) / enc.encode_text(tokens)           # [B, embed_dim]
    enc.encode_fused(pixels, tokens)                              # [B, fused_dim], beit3 only (supports_fused)
"""
from raymmrec.encoders.base import FusedTokens, MultimodalEncoder, Preprocess
from raymmrec.encoders.beit3 import Beit3Config, Beit3Encoder
from raymmrec.encoders.clip import ClipConfig, ClipEncoder, stretch_positions, stretch_text_context
from raymmrec.encoders.factory import (EncoderConfig, create_encoder, create_preprocess, load_encoder,
                                       read_encoder_config, save_encoder)
from raymmrec.encoders.tokenizers import TextTokenizer

__all__ = [
    "Beit3Config", "Beit3Encoder", "ClipConfig", "ClipEncoder", "EncoderConfig", "FusedTokens", "MultimodalEncoder",
    "Preprocess", "TextTokenizer", "create_encoder", "create_preprocess", "load_encoder", "read_encoder_config",
    "save_encoder", "stretch_positions", "stretch_text_context",
]
