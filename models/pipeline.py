"""Panorama360Pipeline: text (+ optional optical flow) -> an equirectangular 360° video, as 360DVD samples it.

Stages of one call (see `__call__`): check inputs, encode the prompt, encode the flow condition with the
360-Adapter, prepare latents, denoise with the published 360 schedule (adapter features for the first three
quarters of the steps, latent rotation after every step, width-circular padding from half-way), undo the net
rotation, decode frames with width-circular padding. Above the native size, steps 3-6 run once per refine stage
(`models.refine`) and each step runs the UNet over spatial windows (`models.spatial_windows`).
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
from models.context_windows import ContextWindows, Window, blend
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
from models.refine import resize_flow, upscale_latents
from models.refine_plan import refine_plan
from models.solvers import make_scheduler, predicted_clean
from models.spatial_blend import blend_regions, crop, crop_features
from models.spatial_windows import LATENT_SCALE, Region, SpatialWindows
from models.subpixel_upsample import use_subpixel_upsampling
from models.vae_tiling import VaeTiling, automatic_tiling, decode_tiled

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
    # the windows it was denoised in (None: one window); where their borders are (models.media.evaluate)
    spatial_windows: SpatialWindows | None = None
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


@dataclass
class _Reporting:
    """The caller's callbacks, with the steps counted (and timed) over every stage of a call."""

    total: int
    progress: ProgressCallback | None
    should_cancel: CancelCheck | None
    preview: PreviewCallback | None
    step_end: StepEndCallback | None
    step_end_inputs: tuple[str, ...]
    device: torch.device
    done: int = 0
    step_seconds: list[float] = field(default_factory=list)

    def check_cancel(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise GenerationCanceled(self.done, self.total)

    def after_step(
        self, pipe: Panorama360Pipeline, i: int, t: torch.Tensor, latents: torch.Tensor, prompt_embeds: torch.Tensor,
        rotation: LatentRotation,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """`callback_on_step_end`, given the latents facing where the output faces; what it returns replaces them."""
        if self.step_end is None:
            return latents, prompt_embeds
        given = {"latents": rotation.undo(latents), "prompt_embeds": prompt_embeds}
        returned = self.step_end(pipe, i, t, {name: given[name] for name in self.step_end_inputs}) or {}
        if "latents" in returned:
            latents = rotation.redo(returned["latents"])
        return latents, returned.get("prompt_embeds", prompt_embeds)

    def step_done(self, started: float, x0: torch.Tensor | None) -> None:
        """`x0`: the step's predicted clean latents facing where the output faces (made only for previews)."""
        self.done += 1
        if self.preview is not None and x0 is not None:
            self.preview(self.done, self.total, x0)
        if self.progress is not None:
            self.progress(self.done, self.total)
        synchronize(self.device)  # a GPU step is timed when it finishes, not when it is launched
        self.step_seconds.append(time.perf_counter() - started)


def _over_regions(
    regions: list[Region], predict: Callable[[Window | None, Region | None], torch.Tensor], latents: torch.Tensor
) -> Callable[[Window | None], torch.Tensor]:
    """`predict(frames, region)` as `predict(frames)`: one temporal window's prediction over its spatial windows."""

    def predict_frames(frames: Window | None) -> torch.Tensor:
        like = latents if frames is None else latents[:, :, frames]
        return blend_regions(regions, partial(predict, frames), like)

    return predict_frames


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
        self.vae_tiling: VaeTiling | None = None  # decode each chunk in these tiles; None: tiles above 512 x 1024
        # (height, width) pixels the UNet was trained at: the default spatial window (the loader sets the registry's)
        sample_size = int(unet.config.sample_size)
        self.native_size = (LATENT_SCALE * sample_size, 2 * LATENT_SCALE * sample_size)
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
    # Pixels by which neighbouring spatial windows overlap at least (a multiple of 64). 0: windows tile the picture
    # and move every step, like the temporal windows, so every latent pixel is computed once per step (the time per
    # pixel of the native size); more blends wider bands at the cost of more windows (docs/performance.md).
    spatial_overlap: int = 0

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
        self, num_frames: int, height: int, width: int, seed: int | torch.Generator, loop: bool = False
    ) -> torch.Tensor:
        # Noise is drawn on the CPU so a seed gives the same start on every device (a call passes its generator, from
        # which refine stages draw next).
        generator = seed if isinstance(seed, torch.Generator) else torch.Generator("cpu").manual_seed(seed)
        noise = self.context_windows.initial_noise(self._latent_shape(num_frames, height, width), generator, loop)
        return noise.to(self.device, self.dtype) * self.scheduler.init_noise_sigma

    def prepare_refine_latents(
        self,
        latents: torch.Tensor,
        height: int,
        width: int,
        scheduler: SchedulerMixin,
        first_step: int,
        generator: torch.Generator,
        loop: bool = False,
    ) -> torch.Tensor:
        """The previous stage's latents upscaled to (height, width) pixels and noised to `first_step`'s level."""
        upscaled = upscale_latents(latents, height // LATENT_SCALE, width // LATENT_SCALE)
        noise = self.context_windows.initial_noise(self._latent_shape(latents.shape[2], height, width), generator, loop)
        if hasattr(scheduler, "set_begin_index"):  # multistep solvers start counting at the first step
            scheduler.set_begin_index(first_step * scheduler.order)
        t = scheduler.timesteps[first_step * scheduler.order]
        return scheduler.add_noise(upscaled, noise.to(self.device, self.dtype), t.reshape(1))

    def _latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        return (1, self.unet.config.in_channels, num_frames, height // LATENT_SCALE, width // LATENT_SCALE)

    def predict_noise(
        self,
        window: Window | None,
        region: Region | None,
        latents: torch.Tensor,
        t: torch.Tensor,
        scheduler: SchedulerMixin,
        prompt_embeds: torch.Tensor,
        features: list[torch.Tensor] | None,
        feature_shift: int,
        adapter_scale: float,
        guidance_scale: float,
    ) -> torch.Tensor:
        """One UNet call, with classifier-free guidance, on the `window` frames (None: all frames, as one video)
        and the `region` (None: the whole picture) of (1, C, F, h, w) latents, with their adapter features (None:
        no features this step; full-size and `feature_shift` latent pixels behind the latents when cropped)."""
        latent_width = latents.shape[-1]
        if window is not None:
            latents = latents[:, :, window]
            features = None if features is None else [f[window] for f in features]
        if region is not None:
            latents = crop(latents, region)
            features = None if features is None else crop_features(features, region, latent_width, feature_shift)
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
        tiling = self.vae_tiling or automatic_tiling(*latents.shape[-2:])
        if tiling is not None:
            return decode_tiled(self.vae, latents, tiling.tile, tiling.overlap, circular)
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
        spatial_window: tuple[int, int] | None = None,
        refine: bool = True,
        refine_strength: float = 0.5,
        scheduler: str = "ddim",
        generator: torch.Generator | None = None,
        callback_on_step_end: StepEndCallback | None = None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
    ) -> PanoramaVideo:
        """Generate one video.

        `loop`: the last frame flows into the first (a seamless loop). Videos longer than the motion module's
        reach, and loops, are denoised in context windows (`context_windows`).

        `spatial_window`: the (height, width) in pixels the UNet sees at most (multiples of 64; default
        `native_size`). A larger output is denoised in spatial windows of that size (`models.spatial_windows`,
        overlapping by `spatial_overlap`); at or below it nothing changes. `refine` (used only above the window):
        generate at a size that fits one window, then upscale 2x at a time and denoise the last `refine_strength`
        of the schedule in windows (`models.refine`), which keeps the small picture's composition; without it the
        windows start from noise at the output size.

        `scheduler`: the solver, one of `models.generation_params.SOLVERS`: "ddim" (the published sampling, the
        default), "dpmpp_2m" (DPM-Solver++ 2M) or "unipc" (UniPC, order 2): the multistep solvers reach DDIM's
        solution in fewer steps (docs/performance.md). Their history turns with the latent rotation.

        `seed` or `generator` (diffusers' convention; give one): the starting noise is drawn from `generator`, or
        from a CPU generator seeded with `seed` (a random one when both are None), so a seed gives the same start
        on every device; refine stages draw their noise next. With `generator`, the video's `seed` is
        `generator.initial_seed()`: it reproduces the video when the generator was freshly seeded.

        Callbacks, each optional:
        - `progress(step, total)` after every step (`step` counts from 1 over every stage of the call);
        - `should_cancel()` before every step and once after the last: True raises `GenerationCanceled`;
        - `preview(step, total, x0)` after every step, with the step's prediction of the clean latents;
        - `callback_on_step_end(pipe, i, t, callback_kwargs)` after every step, as in diffusers pipelines: `i`
          counts from 0 in its stage's schedule, `t` is the step's timestep, `callback_kwargs` maps each name in
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
        make_scheduler(scheduler, self.scheduler)  # an unknown solver is refused before any work
        if flow is not None:
            flow = self.check_flow(flow, num_frames, height, width)
        unknown = set(callback_on_step_end_tensor_inputs) - set(STEP_END_TENSORS)
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs: {sorted(unknown)} not in {STEP_END_TENSORS}")
        windows = SpatialWindows.from_pixels(spatial_window or self.native_size, self.spatial_overlap)
        stages = refine_plan(height, width, windows.pixels, num_inference_steps, refine, refine_strength)
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

        steps = sum(num_inference_steps - stage.first_step for stage in stages)
        reporting = _Reporting(steps, progress, should_cancel, preview, callback_on_step_end,
                               callback_on_step_end_tensor_inputs, self.device)  # fmt: skip
        latents = None
        try:
            for stage in stages:
                stage_height, stage_width, first_step = stage.height, stage.width, stage.first_step
                # 3. Encode the motion condition once per size; later steps roll, crop or drop the features
                stage_flow = resize_flow(flow, stage_height, stage_width)
                features = self.encode_flow(stage_flow, num_frames, stage_height, stage_width, loop)

                # 4. Timesteps (a fresh solver per stage: set_timesteps and step mutate it) and latents: noise at
                # the first size, the previous size's result upscaled and noised again at each larger one
                solver = make_scheduler(scheduler, self.scheduler)
                solver.set_timesteps(num_inference_steps, device=self.device)
                if latents is None:
                    latents = self.prepare_latents(num_frames, stage_height, stage_width, generator, loop)
                else:
                    latents = self.prepare_refine_latents(
                        latents, stage_height, stage_width, solver, first_step, generator, loop
                    )

                # 5-6. Denoise, and undo the net rotation
                latents, prompt_embeds = self.denoise(
                    latents,
                    solver,
                    first_step,
                    features,
                    prompt_embeds,
                    windows,
                    reporting,
                    guidance_scale=guidance_scale,
                    adapter_scale=adapter_scale,
                    enhancements=enhancements,
                    loop=loop,
                )
        finally:
            self.injector.clear()
            set_width_circular_padding(self.unet, False)
            release_freed_host_memory()

        reporting.check_cancel()

        # 7. Decode lazily: the caller streams chunks to the encoder (`PanoramaVideo.chunks`)
        circular = enhancements.circular_padding
        return PanoramaVideo(
            latents=latents,
            seed=seed,
            decode=lambda z: self.decode_chunks(z, circular),
            spatial_windows=windows if windows.needed(*latents.shape[-2:]) else None,
            step_seconds=reporting.step_seconds,
        )

    def denoise(
        self,
        latents: torch.Tensor,
        solver: SchedulerMixin,
        first_step: int,
        features: list[torch.Tensor],
        prompt_embeds: torch.Tensor,
        windows: SpatialWindows,
        reporting: _Reporting,
        *,
        guidance_scale: float,
        adapter_scale: float,
        enhancements: Enhancements,
        loop: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps `first_step`.. of `solver`'s schedule on (1, C, F, h, w) latents with the published 360 schedule,
        then the net rotation undone. Returns the denoised latents and the prompt embeddings (which a step-end
        callback may replace)."""
        num_frames, latent_height, latent_width = latents.shape[2:]
        rotation = LatentRotation(latent_width, rotation_shift(latent_width) if enhancements.latent_rotation else 0)
        spatial = windows.needed(latent_height, latent_width)

        # 5. Denoising loop, over context windows when the video is longer than the motion module's reach or loops,
        # and over spatial windows when the picture is larger than a window
        total = len(solver.timesteps)
        frame_windows = self.context_windows
        for i in range(first_step * solver.order, total):
            t = solver.timesteps[i]
            started = time.perf_counter()
            reporting.check_cancel()
            feature_shift = rotation.total if enhancements.rotate_features else 0
            step_features = None
            if adapter_active(i, total):
                # whole: rolled with the latents; in windows: each window crops the full-size features in place
                whole = not spatial and enhancements.rotate_features
                step_features = rotation.features(features) if whole else features
            regions = windows.layout(latent_height, latent_width, i, total, rotation.total)
            # A window narrower than the panorama must not wrap onto itself (its left and right edges are not
            # neighbours); the windows straddling its borders, the seam included, join it to its neighbours.
            full_width = regions[0].columns.length == latent_width
            set_width_circular_padding(
                self.unet, enhancements.circular_padding and circular_padding_active(i, total) and full_width
            )

            predict = partial(
                self.predict_noise,
                latents=latents,
                t=t,
                scheduler=solver,
                prompt_embeds=prompt_embeds,
                features=step_features,
                feature_shift=feature_shift,
                adapter_scale=adapter_scale,
                guidance_scale=guidance_scale,
            )
            layout = frame_windows.layout(num_frames, frame_windows.offset(i, total, num_frames, loop), loop)
            noise_pred = blend(layout, _over_regions(regions, predict, latents), latents, frame_windows.weights)
            out = solver.step(noise_pred, t, latents)
            x0 = (
                None
                if reporting.preview is None
                else rotation.undo(predicted_clean(solver, out, noise_pred, t, latents))
            )
            latents = rotation.turn(out.prev_sample, solver)
            latents, prompt_embeds = reporting.after_step(self, i, t, latents, prompt_embeds, rotation)
            reporting.step_done(started, x0)

        # 6. Undo the net rotation so the panorama faces where the flow condition faces (the release does not)
        if enhancements.undo_net_rotation:
            latents = rotation.undo(latents)
        return latents, prompt_embeds
