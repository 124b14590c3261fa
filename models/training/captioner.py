"""Captioners for 360 Text Fusion: anything with `caption(images) -> list[str]`; BLIP from local weights."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class Captioner(Protocol):
    def caption(self, images: list[np.ndarray]) -> list[str]:
        """One caption per uint8 (H, W, 3) RGB image."""
        ...


class BlipCaptioner:
    """BLIP image captioning (transformers' BlipForConditionalGeneration), weights read from a local folder only."""

    def __init__(
        self, model, processor, device: str | None = None, max_new_tokens: int = 40, prompt: str | None = None
    ):
        import torch

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, **kwargs) -> BlipCaptioner:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"BLIP weights folder {path} not found (e.g. a local copy of Salesforce/blip-image-captioning-large; "
                "nothing is downloaded)"
            )
        processor = BlipProcessor.from_pretrained(path, local_files_only=True)
        model = BlipForConditionalGeneration.from_pretrained(path, local_files_only=True)
        return cls(model, processor, device=device, **kwargs)

    def caption(self, images: list[np.ndarray]) -> list[str]:
        import torch
        from PIL import Image

        pictures = [Image.fromarray(np.asarray(image, dtype=np.uint8)) for image in images]
        text = [self.prompt] * len(pictures) if self.prompt else None
        inputs = self.processor(images=pictures, text=text, return_tensors="pt").to(self.device)
        with torch.no_grad():
            ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
