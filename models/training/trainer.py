"""Training the 360-Adapter with accelerate (one GPU, many via `accelerate launch`, or the CPU).

The VAE, text encoder, UNet and motion module are frozen (and kept in the mixed-precision dtype); only the
adapter trains, in fp32 under autocast. One step: encode the clip to latents, add noise at a random timestep,
run the adapter on the flow condition, inject its features into the UNet (the inference injector), predict the
noise and take the latitude-aware MSE. AdamW, an LR schedule, gradient clipping, periodic checkpoints (the
published adapter layout + full resume state), periodic validation MP4s, CSV and TensorBoard logs.

Several processes: `accelerate launch $(which dvd360) train --config ...` (GPUs), or on CPUs
`ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N $(which dvd360) train ...` (gloo). Resuming restores the adapter,
optimizer, LR scheduler, RNG states and step, not the position inside the current epoch (it reshuffles).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from models.training.checkpointing import (
    ADAPTER_FILE,
    STATE_DIR,
    checkpoint_dir,
    load_adapter_weights,
    partial_dir,
    prune_checkpoints,
    resolve_resume,
    save_adapter_checkpoint,
    write_trainer_state,
)
from models.training.config import TrainConfig
from models.training.dataset import Augment, PanoramaClipDataset, collate_clips
from models.training.latitude_loss import latitude_weighted_mse

log = logging.getLogger(__name__)

WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class StepCounter:
    """The trainer's position, saved and restored with accelerate's state (register_for_checkpointing)."""

    def __init__(self) -> None:
        self.step = 0
        self.epoch = 0

    def state_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.epoch = int(state["step"]), int(state["epoch"])


@dataclass
class TrainResult:
    step: int
    losses: list[float] = field(default_factory=list)  # one per optimizer step taken in this run
    checkpoints: list[Path] = field(default_factory=list)
    samples: list[Path] = field(default_factory=list)
    skipped: int = 0
    resumed_from: Path | None = None


class MetricsLogger:
    """metrics.csv always (appended across resumes); TensorBoard too when asked for and installed."""

    FIELDS = ("step", "loss", "lr", "grad_norm", "skipped", "seconds")

    def __init__(self, folder: Path, loggers: list[str], enabled: bool) -> None:
        self.enabled = enabled
        self.writer = None
        self.csv_path = folder / "metrics.csv"
        if not enabled:
            return
        folder.mkdir(parents=True, exist_ok=True)
        if "csv" in loggers and not self.csv_path.exists():
            with open(self.csv_path, "w", newline="") as f:
                csv.writer(f).writerow(self.FIELDS)
        self.use_csv = "csv" in loggers
        if "tensorboard" in loggers:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(folder / "tensorboard"))
            except ImportError:
                log.warning("tensorboard is not installed; logging to %s only", self.csv_path)

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.use_csv:
            with open(self.csv_path, "a", newline="") as f:
                csv.writer(f).writerow([step, *(values.get(k, "") for k in self.FIELDS[1:])])
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def load_pipeline_for_training(config: TrainConfig):
    """The inference pipeline on the CPU in fp32 (the trainer moves and casts it)."""
    if config.weights:
        from models.loading import load_pipeline_folder

        return load_pipeline_folder(config.weights, device="cpu")
    if config.model == "tiny":
        from models.tiny import build_tiny_pipeline

        return build_tiny_pipeline(seed=0, device="cpu")
    from models.loading import load_pipeline
    from models.registry import load_registry

    registry = load_registry(Path(config.registry) if config.registry else None)
    return load_pipeline(registry.get(config.model), device="cpu")


def _write_sample(frames: np.ndarray, path: Path, fps: int) -> Path:
    from models.media.video_writer import write_video

    return Path(write_video(frames, path, fps=fps))


class AdapterTrainer:
    def __init__(self, config: TrainConfig, pipeline=None) -> None:
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration, set_seed

        self.config = config.validate()
        self.output_dir = Path(config.output_dir)
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir)),
        )
        set_seed(config.seed, device_specific=True)
        self.weight_dtype = WEIGHT_DTYPES[config.mixed_precision]
        self.pipe = pipeline if pipeline is not None else load_pipeline_for_training(config)
        self._setup_model()
        self.dataset = PanoramaClipDataset(
            config.csv,
            config.videos_dir,
            config.flows_dir,
            num_frames=config.num_frames,
            stride=config.stride,
            height=config.height,
            width=config.width,
            augment=Augment(config.flip_prob, config.roll, config.caption_dropout, config.flow_dropout),
        )
        self._setup_optimisation()
        self.counter = StepCounter()
        self.accelerator.register_for_checkpointing(self.counter)

    # ---------------------------------------------------------------- setup
    def _setup_model(self) -> None:
        from models.groupnorm_v1 import use_animatediff_v1_norms

        pipe, device = self.pipe, self.accelerator.device
        if self.config.v1_norms is not None:  # AnimateDiff v1 GroupNorm statistics (FACTS) or diffusers' own
            use_animatediff_v1_norms(pipe.unet, self.config.v1_norms)
        pipe.to(device, self.weight_dtype)  # frozen parts in the mixed-precision dtype
        for module in (pipe.vae, pipe.text_encoder, pipe.unet):
            module.eval().requires_grad_(False)
        if self.config.gradient_checkpointing:
            pipe.unet.enable_gradient_checkpointing()
        adapter = pipe.adapter
        if self.config.init_adapter:
            load_adapter_weights(adapter, self.config.init_adapter)
        if next(adapter.parameters()).dtype != torch.float32:  # diffusers warns on every cast, even a no-op one
            adapter.to(dtype=torch.float32)
        adapter.to(device).train().requires_grad_(True)
        self.noise_scheduler = pipe.scheduler.from_config(pipe.scheduler.config)

    def _setup_optimisation(self) -> None:
        from diffusers.optimization import get_scheduler

        c = self.config
        optimizer = torch.optim.AdamW(
            self.pipe.adapter.parameters(),
            lr=c.learning_rate,
            betas=(c.adam_beta1, c.adam_beta2),
            weight_decay=c.weight_decay,
            eps=c.adam_epsilon,
        )
        n = self.accelerator.num_processes
        lr_scheduler = get_scheduler(
            c.lr_schedule, optimizer, num_warmup_steps=c.warmup_steps * n, num_training_steps=c.max_steps * n
        )
        loader = DataLoader(
            self.dataset,
            batch_size=c.batch_size,
            shuffle=True,
            num_workers=c.num_workers,
            collate_fn=collate_clips,
            drop_last=len(self.dataset) >= c.batch_size,
            persistent_workers=c.num_workers > 0,
        )
        self.adapter, self.optimizer, self.loader, self.lr_scheduler = self.accelerator.prepare(
            self.pipe.adapter, optimizer, loader, lr_scheduler
        )

    # ---------------------------------------------------------------- one step
    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) in [-1, 1] -> scaled latents (B, 4, F, H/8, W/8), a few frames at a time."""
        b, f = video.shape[:2]
        frames = video.flatten(0, 1).to(self.accelerator.device, self.weight_dtype)
        latents = torch.cat([self.pipe.vae.encode(chunk).latent_dist.sample() for chunk in frames.split(8)])
        latents = latents * self.pipe.vae.config.scaling_factor
        return latents.reshape(b, f, *latents.shape[1:]).transpose(1, 2)

    def compute_loss(self, batch: dict) -> torch.Tensor:
        pipe = self.pipe
        latents = self.encode_video(batch["video"])
        b, _, f = latents.shape[:3]
        noise = torch.randn_like(latents)
        timesteps = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (b,), device=latents.device, dtype=torch.long
        )
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        text = pipe.encode_prompt(list(batch["caption"])).to(self.weight_dtype).repeat_interleave(f, dim=0)
        with self.accelerator.autocast():
            features = self.adapter(batch["flow"].to(self.accelerator.device))
            pipe.injector.set(features)
            try:
                pred = pipe.unet(noisy, timesteps, encoder_hidden_states=text).sample
            finally:
                pipe.injector.clear()
        return latitude_weighted_mse(pred.float(), noise.float())

    # ---------------------------------------------------------------- checkpoints and samples
    def save_checkpoint(self) -> Path:
        acc, step = self.accelerator, self.counter.step
        final = checkpoint_dir(self.output_dir, step)
        tmp = partial_dir(final)
        if acc.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp / STATE_DIR))
        acc.wait_for_everyone()
        if acc.is_main_process:
            save_adapter_checkpoint(acc.unwrap_model(self.adapter), tmp / ADAPTER_FILE)
            write_trainer_state(tmp, step, self.counter.epoch)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            prune_checkpoints(self.output_dir, self.config.keep_checkpoints)
        acc.wait_for_everyone()
        return final

    def validation_condition(self) -> tuple[str, torch.Tensor | None]:
        c = self.config
        flow = None
        if c.validation_flow:
            from models.media.flow_video import read_flow_condition

            flow = torch.as_tensor(read_flow_condition(c.validation_flow, c.num_frames, c.height, c.width))
        prompt = c.validation_prompt
        if flow is None or prompt is None:
            clip = self._first_readable_clip()
            flow = clip["flow"] if flow is None else flow
            prompt = clip["caption"] if prompt is None else prompt
        return prompt, flow

    def _first_readable_clip(self) -> dict:
        from models.media.video_reader import CorruptVideo

        for index in range(len(self.dataset)):
            try:
                return self.dataset.load(index, np.random.default_rng(self.config.validation_seed), Augment.none())
            except (CorruptVideo, OSError, ValueError):
                continue
        raise RuntimeError("no readable clip for the validation sample")

    def validate(self) -> Path | None:
        acc, c = self.accelerator, self.config
        path = None
        if acc.is_main_process:
            prompt, flow = self.validation_condition()
            adapter = acc.unwrap_model(self.adapter)
            adapter.eval()
            try:
                with acc.autocast():
                    video = self.pipe(
                        prompt,
                        flow=flow,
                        num_frames=c.num_frames,
                        height=c.height,
                        width=c.width,
                        num_inference_steps=c.validation_steps,
                        guidance_scale=c.validation_guidance,
                        seed=c.validation_seed,
                    )
            finally:
                adapter.train()
            path = _write_sample(
                video.frames, self.output_dir / "samples" / f"step-{self.counter.step:07d}.mp4", c.validation_fps
            )
            log.info("validation sample written to %s", path)
        acc.wait_for_everyone()
        return path

    def resume(self, resume: str | None) -> Path | None:
        """Restore adapter, optimizer, LR scheduler, RNG states and step from a checkpoint ('latest' or a folder).

        'latest' with no checkpoint yet starts from scratch (so one command both starts and resumes a run).
        """
        folder = resolve_resume(self.output_dir, resume)
        if folder is not None:
            self.accelerator.load_state(str(folder / STATE_DIR))
            log.info("resumed from %s at step %d", folder, self.counter.step)
        return folder

    # ---------------------------------------------------------------- the loop
    def train(self, resume: str | None = None, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
        from tqdm import tqdm

        acc, c = self.accelerator, self.config
        result = TrainResult(step=0)
        result.resumed_from = self.resume(resume)
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.json").write_text(json.dumps(c.to_dict(), indent=2))
        metrics = MetricsLogger(self.output_dir / "logs", c.loggers, acc.is_main_process)
        bar = tqdm(
            total=c.max_steps, initial=self.counter.step, desc="training", unit="step",
            disable=not (c.progress and acc.is_main_process),
        )  # fmt: skip
        window: list[float] = []
        skipped = 0
        started = time.perf_counter()
        try:
            while self.counter.step < c.max_steps:
                for batch in self.loader:
                    skipped += int(batch["skipped"])
                    with acc.accumulate(self.adapter):
                        loss = self.compute_loss(batch)
                        if not math.isfinite(loss.item()):
                            raise FloatingPointError(f"loss is {loss.item()} at step {self.counter.step}")
                        acc.backward(loss)
                        grad_norm = None
                        if acc.sync_gradients and c.max_grad_norm > 0:
                            grad_norm = acc.clip_grad_norm_(self.adapter.parameters(), c.max_grad_norm)
                        self.optimizer.step()
                        self.lr_scheduler.step()
                        self.optimizer.zero_grad(set_to_none=True)
                    window.append(loss.detach().item())
                    if not acc.sync_gradients:
                        continue
                    self.counter.step += 1
                    step_loss = float(np.mean(window))
                    window = []
                    result.losses.append(step_loss)
                    bar.update(1)
                    bar.set_postfix(loss=f"{step_loss:.4f}")
                    if on_step is not None:
                        on_step(self.counter.step, step_loss)
                    if self.counter.step % c.log_every == 0 or self.counter.step == c.max_steps:
                        values = {
                            "loss": float(acc.reduce(torch.tensor(step_loss, device=acc.device), "mean").item()),
                            "lr": self.lr_scheduler.get_last_lr()[0],
                            "skipped": float(acc.reduce(torch.tensor(float(skipped), device=acc.device), "sum").item()),
                            "seconds": time.perf_counter() - started,
                        }
                        if grad_norm is not None:
                            values["grad_norm"] = float(grad_norm)
                        metrics.log(self.counter.step, values)
                    done = self.counter.step >= c.max_steps
                    if c.checkpoint_every and (self.counter.step % c.checkpoint_every == 0 or done):
                        result.checkpoints.append(self.save_checkpoint())
                    if c.validate_every and (self.counter.step % c.validate_every == 0 or done):
                        sample = self.validate()
                        if sample is not None:
                            result.samples.append(sample)
                    if done:
                        break
                else:
                    self.counter.epoch += 1
        finally:
            bar.close()
            metrics.close()
        if skipped:
            log.warning("%d unreadable clips were skipped during training", skipped)
        result.step, result.skipped = self.counter.step, skipped
        return result


def train(config: TrainConfig, resume: str | None = None, pipeline=None) -> TrainResult:
    return AdapterTrainer(config, pipeline=pipeline).train(resume=resume)
