"""The prediction, split from the server the way Cog splits them: `Generator.setup` loads a model once, `predict` turns
one resolved `GenerationRequest` (and its motion file, if any) into output files: the pipeline call, frame
interpolation, the H.264 MP4 with spherical metadata, the poster and the four perspective views.

The generation task wraps it in a job's lifecycle (worker/tasks.py: lease, state, events, storage, webhooks);
`dvd360 generate` calls it directly, so a fixed seed gives the same frames either way. Celery-free; torch is
imported when a model is set up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.records import OutputName, QualityFigures, Timings
from core.request import FlowKind, GenerationRequest
from models.registry import ModelSpec

if TYPE_CHECKING:  # torch stays out of processes that only read settings
    from core.settings import Settings
    from models.media.flow_extract import FlowBackend
    from models.vae_tiling import VaeTiling


@dataclass(frozen=True)
class PipelineOptions:
    """How every pipeline of a worker runs, from its settings (see `core/settings.py` for each)."""

    decode_chunk_size: int | None = None  # None: the pipeline's measured default for its device
    cpu_offload: bool = False
    vae_tiling: VaeTiling | None = None
    compile: str = "off"
    compile_cache_dir: Path | None = None  # where torch.compile's caches persist (None: torch's default)

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineOptions:
        from models.vae_tiling import VaeTiling

        tiling = None if settings.vae_tile is None else VaeTiling(settings.vae_tile, settings.vae_tile_overlap)
        return cls(
            settings.decode_chunk_size, settings.cpu_offload, tiling, settings.compile, settings.compile_cache_dir
        )


def load_with_options(spec: ModelSpec, device: str | None, options: PipelineOptions):
    """Load a pipeline for `device` and set it up as `options` say."""
    from models.devices import default_dtype, select_device
    from models.loading import load_pipeline

    if options.cpu_offload:
        # straight into CPU memory in the target's dtype (not onto the GPU and back): the offload hooks move
        # each model to the target for its stage
        target = select_device(device)
        pipe = load_pipeline(spec, device="cpu", dtype=default_dtype(target))
        pipe.enable_model_cpu_offload(target)
    else:
        pipe = load_pipeline(spec, device=device)
    pipe.decode_chunk_size = options.decode_chunk_size
    pipe.vae_tiling = options.vae_tiling
    if options.compile != "off":
        pipe.enable_compile(backend=options.compile, cache_dir=options.compile_cache_dir)
    return pipe


@dataclass(frozen=True)
class Motion:
    """A motion file on this machine and what it holds."""

    path: Path
    kind: FlowKind


@dataclass(frozen=True)
class PredictionHooks:
    """What the caller hears while the model denoises: `progress(step, total, elapsed_s)` after every step (seconds
    since denoising began, after the motion condition was read: the pace an ETA needs), `should_cancel()` before
    every step (True stops it: GenerationCanceled), `preview(step, total, x0)` with the step's predicted clean
    latents."""

    progress: Callable[[int, int, float], None] | None = None
    should_cancel: Callable[[], bool] | None = None
    preview: Callable[[int, int, Any], None] | None = None


@dataclass(frozen=True)
class Prediction:
    files: dict[OutputName, Path]
    seed: int
    timings: Timings = field(default_factory=Timings)
    quality_figures: QualityFigures | None = None  # scored on the frames as they were encoded


class Generator:
    def __init__(self) -> None:
        self.pipe: Any = None
        self.flow_backend: FlowBackend | None = None

    def setup(
        self,
        spec: ModelSpec,
        device: str | None = None,
        options: PipelineOptions = PipelineOptions(),
        flow_backend: FlowBackend | None = None,
    ) -> Generator:
        """Load the model's pipeline (minutes for real weights); `flow_backend` measures the motion of panorama
        clips (default: DIS on the CPU)."""
        from models.media.flow_extract import FlowBackend

        self.pipe = load_with_options(spec, device, options)
        self.flow_backend = flow_backend or FlowBackend("dis")
        return self

    def predict(
        self,
        request: GenerationRequest,
        files: dict[OutputName, Path],
        motion: Motion | None = None,
        hooks: PredictionHooks = PredictionHooks(),
    ) -> Prediction:
        """Write the outputs named in `files` (video, poster, views) to their paths. Raises GenerationCanceled when
        `hooks.should_cancel` says so, FlowInputError/ValueError for a condition or request the model cannot take."""
        from models.enhancements import Enhancements
        from models.media.evaluate import VideoScores
        from models.media.flow_video import load_flow_condition
        from models.media.interpolate import interpolate_frames
        from models.media.previews import write_poster, write_preview
        from models.media.video_writer import write_video

        started = time.perf_counter()
        r = request
        condition = None
        if motion is not None:
            condition = load_flow_condition(
                motion.path, motion.kind, r.num_frames, r.height, r.width, self.flow_backend, r.loop
            )
        denoising = time.perf_counter()
        progress = None
        if hooks.progress is not None:
            report = hooks.progress

            def progress(step: int, total: int) -> None:
                report(step, total, time.perf_counter() - denoising)

        video = self.pipe(
            r.prompt,
            negative_prompt=r.negative_prompt,
            flow=condition,
            num_frames=r.num_frames,
            height=r.height,
            width=r.width,
            num_inference_steps=r.steps,
            guidance_scale=r.guidance_scale,
            seed=r.seed,
            adapter_scale=r.adapter_scale,
            enhancements=Enhancements(r.latent_rotation, r.rotate_features, r.circular_padding),
            progress=progress,
            should_cancel=hooks.should_cancel,
            preview=hooks.preview,
            loop=r.loop,
            scheduler=r.scheduler,
            refine=r.refine,
        )
        written: dict[OutputName, Path] = {}
        figures = None
        if "video" in files:
            chunks = video.chunks()  # decoded while encoding
            if r.interpolate_to:
                chunks = interpolate_frames(chunks, r.num_frames, r.fps, r.interpolate_to, r.loop)
            # temporal windows are counted in the frames written (interpolation multiplies them)
            window = self.pipe.context_windows.length * (r.interpolate_to or r.fps) // r.fps
            scores = VideoScores(window, video.spatial_windows)
            written["video"] = write_video(scores.passing(chunks), files["video"], fps=r.interpolate_to or r.fps)
            figures = quality_figures(scores.result(), r.loop)
        # the pictures reuse the middle frame kept while encoding
        if "poster" in files:
            written["poster"] = write_poster(video.middle_frame(), files["poster"])
        if "views" in files:
            written["views"] = write_preview(video.middle_frame(), files["views"])
        step_s = sum(video.step_seconds) / len(video.step_seconds) if video.step_seconds else None
        timings = Timings(pipeline_s=round(time.perf_counter() - started, 3), step_s=_rounded(step_s))
        return Prediction(written, video.seed, timings, figures)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 4)


def quality_figures(scores: dict[str, float | None], loop: bool) -> QualityFigures:
    """The job's figures from the video's scores (`loop_closure` means something only for a loop)."""
    rounded = {name: None if value is None else round(value, 4) for name, value in scores.items()}
    return QualityFigures.model_validate({**rounded, "loop_closure": rounded["loop_closure"] if loop else None})
