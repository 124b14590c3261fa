"""Panorama360Pipeline: text (+ optional optical flow) -> an equirectangular 360° video, as 360DVD samples it.

Stages of one call (see `__call__`): check inputs, encode the prompt, encode the flow condition with the
360-Adapter, prepare latents, denoise with the published 360 schedule (adapter features for the first three
quarters of the steps, latent rotation after every step, width-circular padding from half-way), undo the net
rotation, decode frames with width-circular padding.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.schedulers import SchedulerMixin
from transformers import CLIPTextModel, CLIPTokenizer

from models.adapter import Adapter360
from models.checkpoints import inflate_unet
from models.circular_padding import set_width_circular_padding, width_circular_padding
from models.context_windows import ContextWindows, blend
from models.cross_attention import use_per_video_context
from models.devices import (
    configure_attention,
    configure_compile_cache,
    default_decode_chunk_size,
    default_dtype,
    release_freed_host_memory,
    select_device,
    synchronize,
)
from models.enhancements import (
    Enhancements,
    LatentRotation,
    adapter_active,
    circular_padding_active,
    rotation_shift,
)
from models.errors import GenerationCanceled
from models.generation_params import GenerationLimits
from models.groupnorm_v1 import use_animatediff_v1_norms, uses_animatediff_v1_norms
from models.injection import AdapterInjector
from models.solvers import make_scheduler, predicted_clean
from models.subpixel_upsample import use_subpixel_upsampling
from models.vae_tiling import VaeTiling, decode_tiled

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]
# (step, total, x0): the step's predicted clean latents, facing where the output faces (live previews)
PreviewCallback = Callable[[int, int, torch.Tensor], None]
# diffusers' convention: (pipe, step index, timestep, {name: tensor}) -> the tensors to replace
StepEndCallback = Callable[["Panorama360Pipeline", int, torch.Tensor, dict], dict]
STEP_END_TENSORS = ("latents", "prompt_embeds")  # what `callback_on_step_end_tensor_inputs` may name

FOLDER_FORMAT = "dvd360-pipeline"


@dataclass
class PanoramaVideo:
    """A generated equirectangular video, decoded on demand a few frames at a time, so a writer can stream it
    to the encoder instead of holding the whole float32 video (100 MB at 16 x 512 x 1024)."""

    latents: torch.Tensor  # (1, C, F, h, w), already facing where they are shown
    seed: int
    decode: Callable[[torch.Tensor], Iterator[np.ndarray]]  # latents -> (n, H, W, 3) float32 chunks in [0, 1]
    step_seconds: list[float] = field(default_factory=list)  # wall time of each denoising step, callbacks included
    _middle: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        return self.latents.shape[2]

    def chunks(self) -> Iterator[np.ndarray]:
        """The frames in order, a chunk at a time; the middle frame is kept on the way for the poster."""
        start, middle = 0, self.num_frames // 2
        for chunk in self.decode(self.latents):
            if start <= middle < start + len(chunk):
                self._middle = chunk[middle - start : middle - start + 1].copy()
            start += len(chunk)
            yield chunk

    @cached_property
    def frames(self) -> np.ndarray:
        """(F, H, W, 3) float32 in [0, 1]: the whole video at once."""
        return np.concatenate(list(self.chunks()))

    def middle_frame(self) -> np.ndarray:
        """(1, H, W, 3): the middle frame as a one-frame video, decoded alone unless `chunks` already passed it."""
        if self._middle is None:
            middle = self.num_frames // 2
            self._middle = next(self.decode(self.latents[:, :, middle : middle + 1]))
        return self._middle


class Panorama360Pipeline:
    """AnimateDiff (UNetMotionModel) + 360-Adapter + the 360 enhancement techniques."""

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNetMotionModel,
        adapter: Adapter360,
        scheduler: SchedulerMixin,
        *,
        v1_norms: bool = True,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.vae, self.text_encoder, self.tokenizer = vae, text_encoder, tokenizer
        self.unet, self.adapter, self.scheduler = unet, adapter, scheduler
        use_animatediff_v1_norms(unet, v1_norms)
        self.injector = AdapterInjector(unet)
        # the VAE only: in the UNet the upsampling convolutions run on small maps with 1280-channel kernels, whose
        # phase kernels (105 MB each, fp32) cost what they save (H100: step 0.370 s either way)
        use_subpixel_upsampling(vae)
        self.decode_chunk_size: int | None = None  # frames per VAE decode; None: the measured default per device
        self.vae_tiling: VaeTiling | None = None  # decode each chunk in tiles (low VRAM, large outputs)
        self.attention = "sdpa"
        for module in self._modules():
            module.eval().requires_grad_(False)
        self.to(device, dtype)

    @classmethod
    def from_components(
        cls,
        *,
        unet2d: UNet2DConditionModel,
        motion_adapter: MotionAdapter,
        **components,
    ) -> Panorama360Pipeline:
        """Build from an image UNet and a motion adapter (how AnimateDiff inflates SD-1.5)."""
        return cls(unet=inflate_unet(unet2d, motion_adapter), **components)

    # The longest video a call may ask for (settable per pipeline); beyond the motion module's reach (24 frames for
    # mm_sd_v14) the frames are denoised in context windows, at constant memory.
    max_frames: int = GenerationLimits().max_frames

    @cached_property
    def context_windows(self) -> ContextWindows:
        """How long videos and loops are windowed (settable: `pipe.context_windows = ContextWindows(...)`)."""
        return ContextWindows.for_motion_module(int(self.unet.config.motion_max_seq_length))

    def _modules(self) -> list[torch.nn.Module]:
        return [self.vae, self.text_encoder, self.unet, self.adapter]

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Panorama360Pipeline:
        self.device = select_device(device)
        self.dtype = dtype or default_dtype(self.device)
        for module in self._modules():
            # torch's own cast: diffusers' ModelMixin.to warns "modules that should be kept in float32: []" on every
            # dtype cast, even for models that keep none (UNetMotionModel, AutoencoderKL): noise nobody can act on
            if any(p.dtype != self.dtype for p in module.parameters()):
                torch.nn.Module.to(module, dtype=self.dtype)
            module.to(self.device)
        self.attention = configure_attention(self.unet, self.device)
        use_per_video_context(self.unet)  # after the kernel choice, which resets every processor
        return self

    def enable_model_cpu_offload(self, device: str | torch.device | None = None) -> None:
        """Low-VRAM mode: every model waits in CPU memory and moves to `device` when its stage runs (text
        encoder, adapter, UNet, VAE in turn), evicting the one before it; peak GPU memory is the UNet's."""
        from accelerate import cpu_offload_with_hook

        target = select_device(device)
        hooks = []
        for module in (self.text_encoder, self.adapter, self.unet, self.vae):
            module.to("cpu")
            hooks.append(cpu_offload_with_hook(module, target, prev_module_hook=hooks[-1] if hooks else None)[1])
        # a ring: the next call's text encoder evicts this call's VAE (else it stays on the GPU beside the UNet)
        hooks[0].hook.prev_module_hook = hooks[-1]
        self.device = target  # where inputs are made; the hooks bring each model to them

    def enable_compile(self, backend: str = "inductor", cache_dir: str | Path | None = None) -> None:
        """torch.compile the UNet and the VAE decoder (for long-lived workers: the first job compiles a graph
        per schedule phase, later jobs of the same shape reuse them; switching the adapter and circular padding
        changes no guard, see `models.injection` and `models.circular_padding`). `cache_dir`: keep the compile
        caches there (`models.devices.configure_compile_cache`), so a restarted process compiles nothing new."""
        if cache_dir is not None:
            configure_compile_cache(cache_dir)
        set_width_circular_padding(self.unet, False)  # the convs take their switchable class before tracing
        set_width_circular_padding(self.vae, False)
        self.unet.compile(backend=backend)
        self.vae.decoder.compile(backend=backend)

    # ---------------------------------------------------------------- saving
    def save_pretrained(self, folder: str | Path) -> Path:
        """Write a model folder that `models.loading.load_pipeline_folder` reads back (and a registry can name)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("vae", "text_encoder", "tokenizer", "unet", "adapter", "scheduler"):
            getattr(self, name).save_pretrained(folder / name)
        index = {"format": FOLDER_FORMAT, "version": 1, "v1_norms": uses_animatediff_v1_norms(self.unet)}
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))
        return folder

    # ---------------------------------------------------------------- sampling
    def check_inputs(self, num_frames: int, height: int, width: int, steps: int, guidance_scale: float) -> None:
        if not 1 <= num_frames <= self.max_frames:
            raise ValueError(f"num_frames must be between 1 and {self.max_frames} (this pipeline's max_frames)")
        if height % 64 or width % 64 or height <= 0:
            raise ValueError(f"height and width must be positive multiples of 64, got {height}x{width}")
        if width != 2 * height:
            raise ValueError(f"an equirectangular video needs width = 2 x height, got {height}x{width}")
        if steps < 1:
            raise ValueError("num_inference_steps must be at least 1")
        if guidance_scale < 0:
            raise ValueError("guidance_scale must be >= 0")

    def check_flow(self, flow: torch.Tensor | np.ndarray, num_frames: int, height: int, width: int) -> torch.Tensor:
        flow = torch.as_tensor(flow)
        expected = (num_frames, 3, height, width)
        if tuple(flow.shape) != expected:
            raise ValueError(f"flow condition must have shape {expected} (frames, RGB, H, W), got {tuple(flow.shape)}")
        return flow

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(self.device))[0]

    @torch.no_grad()
    def encode_flow(
        self, flow: torch.Tensor | None, num_frames: int, height: int, width: int, loop: bool = False
    ) -> list[torch.Tensor]:
        """Adapter features for one video. No flow means a zero input: the adapter's own "no motion" case.
        For a loop, the flow is wrapped in time around its ends, by the reach of the adapter's temporal
        convolutions, so the first frames' features see the last frames as their neighbours."""
        if flow is None:
            flow = torch.zeros(num_frames, 3, height, width)
        pad = min(len(self.adapter.body), num_frames) if loop else 0
        if pad:
            flow = torch.cat([flow[-pad:], flow, flow[:pad]])
        features = self.adapter(flow.to(self.device, self.dtype).unsqueeze(0))
        return [f[pad : pad + num_frames] for f in features] if pad else features

    def prepare_latents(
        self, num_frames: int, height: int, width: int, generator: torch.Generator, loop: bool = False
    ) -> torch.Tensor:
        shape = (1, self.unet.config.in_channels, num_frames, height // 8, width // 8)
        noise = self.context_windows.initial_noise(shape, generator, loop)
        return noise.to(self.device, self.dtype) * self.scheduler.init_noise_sigma

    def predict_noise(
        self,
        window: list[int] | None,
        latents: torch.Tensor,
        t: torch.Tensor,
        scheduler: SchedulerMixin,
        prompt_embeds: torch.Tensor,
        features: list[torch.Tensor] | None,
        adapter_scale: float,
        guidance_scale: float,
    ) -> torch.Tensor:
        """One UNet call, with classifier-free guidance, on the `window` frames of (1, C, F, h, w) latents (None:
        all frames, as one video) and their adapter features (None: no features this step)."""
        if window is not None:
            latents = latents[:, :, window]
            features = None if features is None else [f[window] for f in features]
        if features is None:
            self.injector.clear()
        else:
            self.injector.set(features, adapter_scale)
        do_cfg = guidance_scale > 1.0
        model_input = torch.cat([latents] * 2) if do_cfg else latents
        model_input = scheduler.scale_model_input(model_input, t)
        # One text embedding per video, not per frame: the cross-attention layers share it among the video's
        # frames (models.cross_attention), projecting it once instead of once per frame.
        noise_pred = self.unet(model_input, t, encoder_hidden_states=prompt_embeds).sample
        if do_cfg:
            uncond, cond = noise_pred.chunk(2)
            noise_pred = uncond + guidance_scale * (cond - uncond)
        return noise_pred

    @torch.no_grad()
    def decode_chunks(self, latents: torch.Tensor, circular: bool) -> Iterator[np.ndarray]:
        """(1, C, F, h, w) latents -> (n, H, W, 3) float32 frames in [0, 1], `decode_chunk_size` frames at a time."""
        frames = latents[0].transpose(0, 1) / self.vae.config.scaling_factor
        for chunk in frames.split(self.decode_chunk_size or default_decode_chunk_size(self.device)):
            pictures = self.decode_pictures(chunk, circular)
            yield (pictures.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    def decode_pictures(self, latents: torch.Tensor, circular: bool) -> torch.Tensor:
        """(n, C, h, w) latents over the scaling factor -> (n, 3, H, W) pictures (about -1..1), whole or tiled."""
        if self.vae_tiling is not None:
            return decode_tiled(self.vae, latents, self.vae_tiling.tile, self.vae_tiling.overlap, circular)
        # padding is switched per call: the generator may be suspended (or dropped) between chunks
        with width_circular_padding(self.vae, circular):
            return self.vae.decode(latents).sample

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        negative_prompt: str = "",
        flow: torch.Tensor | np.ndarray | None = None,
        num_frames: int = 16,
        height: int = 512,
        width: int = 1024,
        num_inference_steps: int = 25,
        guidance_scale: float = 7.5,
        seed: int | None = None,
        adapter_scale: float = 1.0,
        enhancements: Enhancements = Enhancements(),
        progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        preview: PreviewCallback | None = None,
        loop: bool = False,
        scheduler: str = "ddim",
        generator: torch.Generator | None = None,
        callback_on_step_end: StepEndCallback | None = None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
    ) -> PanoramaVideo:
        """Generate one video.

        `loop`: the last frame flows into the first (a seamless loop). Videos longer than the motion module's
        reach, and loops, are denoised in context windows (`context_windows`).

        `scheduler`: the solver, one of `models.generation_params.SOLVERS`: "ddim" (the published sampling, the
        default), "dpmpp_2m" (DPM-Solver++ 2M) or "unipc" (UniPC, order 2): the multistep solvers reach DDIM's
        solution in fewer steps (docs/performance-solvers.md). Their history turns with the latent rotation.

        `seed` or `generator` (diffusers' convention; give one): the starting noise is drawn from `generator`, or
        from a CPU generator seeded with `seed` (a random one when both are None), so a seed gives the same start
        on every device. With `generator`, the video's `seed` is `generator.initial_seed()`: it reproduces the
        video when the generator was freshly seeded.

        Callbacks, each optional:
        - `progress(step, total)` after every step (`step` counts from 1);
        - `should_cancel()` before every step and once after the last: True raises `GenerationCanceled`;
        - `preview(step, total, x0)` after every step, with the step's prediction of the clean latents;
        - `callback_on_step_end(pipe, i, t, callback_kwargs)` after every step, as in diffusers pipelines: `i`
          counts from 0, `t` is the step's timestep, `callback_kwargs` maps each name in
          `callback_on_step_end_tensor_inputs` (from "latents", "prompt_embeds") to its tensor; the dict it
          returns may hold replacements for them. "latents" are (1, C, F, h, w) as the next step takes them,
          with the net latent rotation undone for the callback (and redone on what it returns);
          "prompt_embeds" are [negative, prompt] embeddings under guidance, else [prompt].
        Latents given to `preview` and `callback_on_step_end` face where the flow condition faces, as the output
        does (unless `enhancements.rotate_features` is off: the released loop keeps its net rotation).

        The returned video's `step_seconds` holds the wall time of each step (callbacks included).
        """
        # 1. Check inputs
        self.check_inputs(num_frames, height, width, num_inference_steps, guidance_scale)
        solver = make_scheduler(scheduler, self.scheduler)  # fresh per call (set_timesteps and step mutate it)
        if flow is not None:
            flow = self.check_flow(flow, num_frames, height, width)
        unknown = set(callback_on_step_end_tensor_inputs) - set(STEP_END_TENSORS)
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs: {sorted(unknown)} not in {STEP_END_TENSORS}")
        if generator is not None and seed is not None:
            raise ValueError("give `seed` or `generator`, not both")
        if generator is None:
            seed = secrets.randbelow(2**31) if seed is None else int(seed)
            generator = torch.Generator("cpu").manual_seed(seed)
        else:
            seed = generator.initial_seed()
        do_cfg = guidance_scale > 1.0

        # 2. Encode the prompt (negative first: the classifier-free-guidance batch is [uncond, cond])
        prompt_embeds = self.encode_prompt([negative_prompt, prompt] if do_cfg else [prompt])

        # 3. Encode the motion condition once; later steps only roll or drop the features
        features = self.encode_flow(flow, num_frames, height, width, loop)

        # 4. Timesteps and latents
        solver.set_timesteps(num_inference_steps, device=self.device)
        latents = self.prepare_latents(num_frames, height, width, generator, loop)
        latent_width = latents.shape[-1]
        rotation = LatentRotation(latent_width, rotation_shift(latent_width) if enhancements.latent_rotation else 0)

        # 5. Denoising loop, over context windows when the video is longer than the motion module's reach or loops
        total = len(solver.timesteps)
        windows = self.context_windows
        step_seconds: list[float] = []
        try:
            for i, t in enumerate(solver.timesteps):
                started = time.perf_counter()
                if should_cancel is not None and should_cancel():
                    raise GenerationCanceled(i, total)
                step_features = None
                if adapter_active(i, total):
                    step_features = rotation.features(features) if enhancements.rotate_features else features
                set_width_circular_padding(
                    self.unet, enhancements.circular_padding and circular_padding_active(i, total)
                )

                predict = partial(
                    self.predict_noise,
                    latents=latents,
                    t=t,
                    scheduler=solver,
                    prompt_embeds=prompt_embeds,
                    features=step_features,
                    adapter_scale=adapter_scale,
                    guidance_scale=guidance_scale,
                )
                layout = windows.layout(num_frames, windows.offset(i, total, num_frames, loop), loop)
                noise_pred = blend(layout, predict, latents, windows.weights)
                out = solver.step(noise_pred, t, latents)
                if preview is not None:
                    preview(i + 1, total, rotation.undo(predicted_clean(solver, out, noise_pred, t, latents)))
                latents = rotation.turn(out.prev_sample, solver)

                if callback_on_step_end is not None:
                    given = {"latents": rotation.undo(latents), "prompt_embeds": prompt_embeds}
                    kwargs = {name: given[name] for name in callback_on_step_end_tensor_inputs}
                    returned = callback_on_step_end(self, i, t, kwargs) or {}
                    if "latents" in returned:
                        latents = rotation.redo(returned["latents"])
                    prompt_embeds = returned.get("prompt_embeds", prompt_embeds)
                if progress is not None:
                    progress(i + 1, total)
                synchronize(self.device)
                step_seconds.append(time.perf_counter() - started)
        finally:
            self.injector.clear()
            set_width_circular_padding(self.unet, False)
            release_freed_host_memory()

        if should_cancel is not None and should_cancel():
            raise GenerationCanceled(total, total)

        # 6. Undo the net rotation so the panorama faces where the flow condition faces (the release does not)
        if enhancements.undo_net_rotation:
            latents = rotation.undo(latents)

        # 7. Decode lazily: the caller streams chunks to the encoder (`PanoramaVideo.chunks`)
        circular = enhancements.circular_padding
        return PanoramaVideo(
            latents=latents,
            seed=seed,
            decode=lambda z: self.decode_chunks(z, circular),
            step_seconds=step_seconds,
        )
