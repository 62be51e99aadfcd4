"""Stage-2 encoders: CLIP (open_clip, Long-CLIP) and BEiT3 (multiway transformer) behind one protocol."""
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
