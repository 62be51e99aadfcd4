"""The encoder stage of extraction (one model load per Ray Data actor); the CPU preprocessing tasks run
`raymmrec.item_preprocess.preprocess_items`.

Every batch carries the `item` id through both stages, because Ray Data does not keep row order.
"""
from __future__ import annotations

import numpy as np

from raymmrec.encoders.source import EncoderSource
from raymmrec.item_preprocess import IMAGE_OK

class EncodeItems:
    """Ray Data actor: builds the encoder once, then embeds preprocessed batches (only the inputs present)."""

    def __init__(self, source: EncoderSource, method: str, single_modality: bool = False, torch_threads: int = 0):
        import torch

        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.encoder = source.build().to(self.device)
        self.method = method
        self.same_width = self.encoder.embed_dim == self.encoder.fused_dim
        self.single_modality = single_modality and self.same_width

    def _rows(self, fn, mask: np.ndarray, *inputs: np.ndarray, dim: int) -> np.ndarray:
        """fn(inputs[mask]) scattered into zeros [B, dim]."""
        import torch

        out = np.zeros((len(mask), dim), np.float32)
        idx = np.flatnonzero(mask)
        if len(idx):
            tensors = [torch.from_numpy(np.ascontiguousarray(x[idx])).to(self.device) for x in inputs]
            out[idx] = fn(*tensors).float().cpu().numpy()
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        enc = self.encoder
        image_ok = batch["image_status"] == IMAGE_OK
        out = {k: batch[k] for k in ("item", "image_status", "text_ok", "present") if k in batch}
        with torch.inference_mode():
            if self.method == "beit3":
                out.update(self._beit3(batch, image_ok))
                return out
            out["image"] = self._rows(enc.encode_image, image_ok, batch["pixels"], dim=enc.embed_dim)
            if self.method == "cliper":
                b, c, length = batch["tokens"].shape
                views = self._rows(enc.encode_text, batch["present"].reshape(-1),
                                   batch["tokens"].reshape(b * c, length), dim=enc.embed_dim)
                out["views"] = views.reshape(b, c, enc.embed_dim)
            else:
                out["text"] = self._rows(enc.encode_text, batch["text_ok"], batch["tokens"], dim=enc.embed_dim)
        return out

    def _beit3(self, batch: dict[str, np.ndarray], image_ok: np.ndarray) -> dict[str, np.ndarray]:
        enc = self.encoder
        text_ok = batch["text_ok"]
        pixels, tokens = batch["pixels"], batch["tokens"]
        fused = self._rows(enc.encode_fused, image_ok & text_ok, pixels, tokens, dim=enc.fused_dim)
        out = {"fused": fused}
        if not self.same_width:
            return out   # single-modality CLS goes through contrastive heads of another width: no substitute
        # an item with one modality missing gets the CLS of the modality it has (AlignRec's substitute rows)
        need_image = image_ok if self.single_modality else image_ok & ~text_ok
        need_text = text_ok if self.single_modality else text_ok & ~image_ok
        image_only = self._rows(enc.encode_image, need_image, pixels, dim=enc.fused_dim)
        text_only = self._rows(enc.encode_text, need_text, tokens, dim=enc.fused_dim)
        fused[image_ok & ~text_ok] = image_only[image_ok & ~text_ok]
        fused[~image_ok & text_ok] = text_only[~image_ok & text_ok]
        if self.single_modality:
            out.update(image_only=image_only, text_only=text_only)
        return out
