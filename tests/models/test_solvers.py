"""Solvers (issue 27): DDIM unchanged, multistep solvers whose history turns with the latent rotation converge in
few steps, diffusers' `generator=` and `callback_on_step_end`, per-step times, previews."""

import numpy as np
import pytest
import torch

from models import enhancements as enhancements_module
from models.context_windows import ContextWindows
from models.enhancements import Enhancements
from models.generation_params import SOLVERS
from models.scheduler import ANIMATEDIFF_SCHEDULE, animatediff_ddim_scheduler
from models.solvers import SOLVER_CLASSES, make_scheduler, transform_solver_state
from models.spatial_blend import crop

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"
SMALL = {"height": 64, "width": 128}
SMALL_WINDOWS = ContextWindows(length=4, stride=4, max_length=6, shift=1)
MULTISTEP = [s for s in SOLVERS if s != "ddim"]


@pytest.fixture
def one_thread():
    """One fixed CPU summation order (the fixture was recorded so), and faster small calls on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def windows(tiny_pipe):
    """Windows of 4 frames: a 10-frame loop exercises what a 128-frame video does through 16-frame windows."""
    tiny_pipe.context_windows = SMALL_WINDOWS
    yield
    tiny_pipe.__dict__.pop("context_windows")  # back to the cached property's default


# ------------------------------------------------------------------ the default stays bit for bit


def test_default_ddim_is_bit_identical_to_the_pipeline_before_solvers(tiny_pipe, one_thread):
    """ddim_latents_before_solvers.npz: final latents and previews of git 93fc32f's pipeline (before solvers),
    recorded as fixtures/README.md says; the default (and scheduler="ddim") must reproduce them exactly."""
    recorded = np.load(FIXTURES / "ddim_latents_before_solvers.npz")
    prompt = "a volcano at dusk"
    flow = np.random.default_rng(7).uniform(-1, 1, (8, 3, 64, 128)).astype(np.float32)
    job = {"num_frames": 8, "num_inference_steps": 4, "seed": 1234, **SMALL}
    previews = []
    default = tiny_pipe(prompt, flow=flow, preview=lambda i, n, x0: previews.append(x0), **job)
    named = tiny_pipe(prompt, flow=flow, scheduler="ddim", **job)
    released = tiny_pipe(prompt, enhancements=Enhancements(rotate_features=False), **job)
    tiny_pipe.context_windows = SMALL_WINDOWS
    try:
        looped = tiny_pipe(prompt, num_frames=10, num_inference_steps=3, seed=1234, loop=True, **SMALL)
    finally:
        tiny_pipe.__dict__.pop("context_windows")
    runs = {
        "default_flow_8": default.latents,
        "default_flow_8_previews": torch.stack(previews),
        "released_8": released.latents,
        "loop_10_windows": looped.latents,
    }
    for name, latents in runs.items():
        assert np.array_equal(latents.numpy(), recorded[name]), name
    assert torch.equal(named.latents, default.latents)


# ------------------------------------------------------------------ convergence with the latent rotation on

# one frame: the solver and the rotation are what is measured (2 frames: the same ratios at twice the time)
CONVERGENCE = {"num_frames": 1, "seed": 7, "guidance_scale": 7.5, **SMALL}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.fixture(scope="module")
def ddim_solutions(tiny_pipe):
    """DDIM at 100 steps (the reference solution) and at 25 (the published sampling), default enhancements."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = tiny_pipe("a volcano at dusk", num_inference_steps=100, **CONVERGENCE).latents
        ddim_25 = tiny_pipe("a volcano at dusk", num_inference_steps=25, **CONVERGENCE).latents
    finally:
        torch.set_num_threads(threads)
    return reference, relative_error(ddim_25, reference)


@pytest.mark.parametrize("solver", MULTISTEP)
def test_multistep_solvers_converge_with_the_rotation_on(tiny_pipe, ddim_solutions, one_thread, solver):
    """10 steps land within DDIM-25's error of the DDIM-100 solution, 50 steps within half of it (measured:
    DDIM-25 0.164, dpmpp_2m 0.083 / 0.051, unipc 0.079 / 0.052; with the history left unrolled, issue 27 saw
    DPM++ end 5.2 to 88 x the latents' norm away)."""
    reference, ddim_25 = ddim_solutions
    ten = tiny_pipe("a volcano at dusk", scheduler=solver, num_inference_steps=10, **CONVERGENCE).latents
    fifty = tiny_pipe("a volcano at dusk", scheduler=solver, num_inference_steps=50, **CONVERGENCE).latents
    assert relative_error(ten, reference) < ddim_25
    assert relative_error(fifty, reference) < ddim_25 / 2


# ------------------------------------------------------------------ the history turns with the latents


def per_pixel_noise(window, region, latents, t, **_):
    """A roll-equivariant stand-in for the UNet: each latent pixel's noise is a nonlinear function of that pixel
    and t alone, so rolling the input rolls the output exactly."""
    x = latents if window is None else latents[:, :, window]
    x = x if region is None else crop(x, region)
    s = float(t) / 1000
    return torch.tanh(x) * (0.5 + s) + 0.3 * s * x + 0.1 * torch.sin(3 * x)


def run_equivariant(pipe, monkeypatch, solver, enhancements, loop):
    monkeypatch.setattr(pipe, "predict_noise", per_pixel_noise)
    frames = 10 if loop else 4
    video = pipe(
        "x",
        num_frames=frames,
        num_inference_steps=7,
        seed=3,
        scheduler=solver,
        enhancements=enhancements,
        loop=loop,
        **SMALL,
    )
    return video.latents


@pytest.mark.parametrize("loop", [False, True], ids=["short", "loop-in-windows"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_the_rotation_turns_the_solver_history_with_the_latents(tiny_pipe, monkeypatch, windows, solver, loop):
    """For a roll-equivariant model the latent rotation is a change of coordinates: sampling with the latents
    (and with them everything with their layout) turned a quarter every step, then turned back, gives what
    sampling unturned gives. Released mode (features fixed, net rotation kept) gives it rolled by the total.
    Unrolled history (the bug of issue 27) breaks it for the multistep solvers."""
    still = run_equivariant(tiny_pipe, monkeypatch, solver, Enhancements(latent_rotation=False), loop)
    turned = run_equivariant(tiny_pipe, monkeypatch, solver, Enhancements(), loop)
    released = run_equivariant(tiny_pipe, monkeypatch, solver, Enhancements(rotate_features=False), loop)
    torch.testing.assert_close(turned, still, rtol=0, atol=1e-5)
    torch.testing.assert_close(released, torch.roll(still, 7 * 4, dims=-1), rtol=0, atol=1e-5)  # 7 quarter turns

    monkeypatch.setattr(enhancements_module, "transform_solver_state", lambda scheduler, fn, like: [])
    stale = run_equivariant(tiny_pipe, monkeypatch, solver, Enhancements(), loop)
    if solver == "ddim":  # DDIM keeps no history: nothing to turn
        torch.testing.assert_close(stale, still, rtol=0, atol=1e-5)
    else:
        assert relative_error(stale, still) > 0.05


@pytest.mark.parametrize(
    ("solver", "state"), [("dpmpp_2m", ["model_outputs"]), ("unipc", ["model_outputs", "last_sample"])]
)
def test_solver_state_with_the_latents_layout_is_found(solver, state):
    """Exactly the per-pixel history turns (stored model outputs, UniPC's previous sample); 1-D schedules stay."""
    scheduler = make_scheduler(solver, animatediff_ddim_scheduler())
    scheduler.set_timesteps(5)
    latents = torch.randn(1, 4, 2, 8, 16, generator=torch.Generator().manual_seed(0))
    for t in scheduler.timesteps[:3]:
        latents = scheduler.step(0.5 * latents, t, latents).prev_sample
    before = {
        name: [v.clone() if isinstance(v, torch.Tensor) else v for v in value] if isinstance(value, list) else value
        for name, value in vars(scheduler).items()
    }
    assert transform_solver_state(scheduler, lambda x: torch.roll(x, 4, -1), latents) == state
    outputs = [o for o in before["model_outputs"] if o is not None]
    assert len(outputs) == 2
    for old, new in zip(outputs, scheduler.model_outputs, strict=True):
        assert torch.equal(new, torch.roll(old, 4, -1))
    assert torch.equal(scheduler.sigmas, before["sigmas"]) and torch.equal(scheduler.timesteps, before["timesteps"])


def test_solvers_sample_the_animatediff_schedule():
    base = animatediff_ddim_scheduler()
    ddim = make_scheduler("ddim", base)  # what the pipeline made before solvers: base.from_config(base.config)
    assert type(ddim) is type(base) and ddim.config == base.from_config(base.config).config and ddim is not base
    for solver in SOLVERS:
        scheduler = make_scheduler(solver, base)
        for key in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "steps_offset"):
            assert scheduler.config[key] == ANIMATEDIFF_SCHEDULE[key], (solver, key)
        assert scheduler.init_noise_sigma == base.init_noise_sigma  # the pipeline scales the start by the base's
        scheduler.set_timesteps(10)
        assert int(scheduler.timesteps[0]) == (901 if solver == "ddim" else 999)  # trailing: from pure noise
    assert tuple(SOLVER_CLASSES) == SOLVERS
    with pytest.raises(ValueError, match="unknown scheduler 'euler'; choose one of ddim, dpmpp_2m, unipc"):
        make_scheduler("euler", base)


def test_unknown_scheduler_is_refused_before_any_work(tiny_pipe):
    with pytest.raises(ValueError, match="unknown scheduler 'lms'"):
        tiny_pipe("x", num_frames=2, num_inference_steps=1, seed=0, scheduler="lms", **SMALL)


# ------------------------------------------------------------------ diffusers conventions, timings, previews

JOB = {"num_frames": 2, "num_inference_steps": 3, **SMALL}


def test_generator_is_the_seed_s_alternative(tiny_pipe):
    by_seed = tiny_pipe("x", seed=5, **JOB)
    by_generator = tiny_pipe("x", generator=torch.Generator().manual_seed(5), **JOB)
    assert torch.equal(by_seed.latents, by_generator.latents) and by_generator.seed == 5
    used = torch.Generator().manual_seed(5)
    torch.randn(3, generator=used)  # an advanced generator draws other noise (its seed is still reported)
    other = tiny_pipe("x", generator=used, **JOB)
    assert not torch.equal(other.latents, by_seed.latents) and other.seed == 5
    with pytest.raises(ValueError, match="`seed` or `generator`, not both"):
        tiny_pipe("x", seed=5, generator=torch.Generator().manual_seed(5), **JOB)


@pytest.mark.parametrize("solver", SOLVERS)
def test_callback_on_step_end_sees_and_replaces_the_latents_facing_the_output(tiny_pipe, solver):
    plain = tiny_pipe("x", seed=2, scheduler=solver, **JOB)
    calls = []

    def observe(pipe, i, t, kwargs):
        calls.append((pipe, i, int(t), kwargs["latents"].clone(), kwargs["prompt_embeds"].shape))
        return kwargs  # handing the latents back unchanged changes nothing (undone, then redone exactly)

    observed = tiny_pipe(
        "x",
        seed=2,
        scheduler=solver,
        callback_on_step_end=observe,
        callback_on_step_end_tensor_inputs=("latents", "prompt_embeds"),
        **JOB,
    )
    assert torch.equal(observed.latents, plain.latents)
    timesteps = make_scheduler(solver, tiny_pipe.scheduler)
    timesteps.set_timesteps(3)
    assert [(c[0], c[1], c[2]) for c in calls] == [(tiny_pipe, i, int(t)) for i, t in enumerate(timesteps.timesteps)]
    assert torch.equal(calls[-1][3], plain.latents)  # the last step's latents, facing the output
    assert calls[0][4] == (2, 77, 32)  # [negative, prompt] under guidance

    def darken_last(pipe, i, t, kwargs):
        return {"latents": kwargs["latents"] * 0.5} if i == 2 else {}

    darker = tiny_pipe("x", seed=2, scheduler=solver, callback_on_step_end=darken_last, **JOB)
    assert torch.equal(darker.latents, plain.latents * 0.5)
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        tiny_pipe("x", seed=2, callback_on_step_end=observe, callback_on_step_end_tensor_inputs=("noise",), **JOB)


@pytest.mark.parametrize("solver", SOLVERS)
def test_previews_and_step_times_for_every_solver(tiny_pipe, solver):
    """Multistep solvers report no x0: it is computed from the noise prediction. The last step lands on the
    clean latents (sigma zero), so the last preview is the result, facing the output like it."""
    previews, progress = [], []
    video = tiny_pipe(
        "x",
        seed=2,
        scheduler=solver,
        preview=lambda i, n, x0: previews.append((i, n, x0)),
        progress=lambda i, n: progress.append((i, n)),
        **JOB,
    )
    assert [(i, n) for i, n, _ in previews] == progress == [(1, 3), (2, 3), (3, 3)]
    torch.testing.assert_close(previews[-1][2], video.latents, rtol=1e-4, atol=1e-4)
    assert len(video.step_seconds) == 3 and all(0 < s < 60 for s in video.step_seconds)
