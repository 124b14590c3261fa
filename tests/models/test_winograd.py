"""Issue 19's Winograd F(4x4, 3x3) convolution on CPU (`models.winograd_conv`, C kernels built by `models.native`):
the same function as `F.conv2d` to float rounding in every shape, padding and chunking it can meet, chosen only
where it applies, and torch's own kernels wherever the C library cannot be built."""

import concurrent.futures
import ctypes
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models import native, winograd_conv
from models.circular_padding import WidthCircularConv2d, set_width_circular_padding
from models.winograd_conv import plan_chunks, winograd_applies, winograd_conv2d

# The transforms add and subtract values up to ~100x the result: rounding, relative to the output's scale.
TOLERANCE = 1e-4
NO_COMPILER = "no C compiler (CC) on this machine"
ON_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture
def compiler() -> str:
    """The C compiler. Where there is none, a developer's run skips what needs it (the fallback's tests still run);
    under CI=true it fails: CI must test the kernels it ships (`scripts/setup.sh test` installs gcc)."""
    found = native._compiler()
    if found is None:
        if ON_CI:
            pytest.fail(f"{NO_COMPILER}, and CI=true: install one (scripts/setup.sh test does) or set CC")
        pytest.skip(NO_COMPILER)
    return found


needs_compiler = pytest.mark.usefixtures("compiler")


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    error = (actual - expected).abs().max() / expected.abs().max()
    assert error < TOLERANCE, f"relative error {error:.2e}"


def reference(x, weight, bias, padding, circular):
    if circular and padding[1]:
        x = F.pad(x, (padding[1], padding[1], 0, 0), mode="circular")
        padding = (padding[0], 0)
    return F.conv2d(x, weight, bias, padding=padding)


def operands(n, channels, out_channels, h, w, bias=True, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, h, w, generator=generator)
    weight = torch.randn(out_channels, channels, 3, 3, generator=generator) / (9 * channels) ** 0.5
    return x, weight, torch.randn(out_channels, generator=generator) if bias else None


@pytest.fixture(autouse=True)
def fresh_native_cache():
    """Each test sees `native.load` as a new process would (environment read afresh); the built file is reused."""
    native.load.cache_clear()
    yield
    native.load.cache_clear()


@needs_compiler
@pytest.mark.parametrize("circular", [False, True])
@pytest.mark.parametrize(
    ("n", "channels", "out_channels", "h", "w", "bias"),
    [
        (1, 16, 16, 8, 16, True),  # whole tiles
        (2, 5, 7, 9, 13, True),  # partial tiles on both sides, channels not a multiple of 8
        (3, 17, 9, 30, 61, False),  # no bias
        (1, 3, 20, 1, 1, True),  # one pixel: everything but the centre tap reads padding
        (1, 8, 4, 5, 2, True),  # narrower than a tile
        (2, 32, 24, 16, 32, True),  # UNet-like
    ],
)
def test_equals_conv2d(circular, n, channels, out_channels, h, w, bias):
    x, weight, b = operands(n, channels, out_channels, h, w, bias)
    close(winograd_conv2d(x, weight, b, (1, 1), circular), reference(x, weight, b, (1, 1), circular))


@needs_compiler
@pytest.mark.parametrize("padding", [(0, 0), (1, 0), (0, 1)])
@pytest.mark.parametrize("circular", [False, True])
def test_equals_conv2d_with_other_paddings(padding, circular):
    x, weight, b = operands(2, 6, 5, 11, 14)
    close(winograd_conv2d(x, weight, b, padding, circular), reference(x, weight, b, padding, circular))


@needs_compiler
def test_non_contiguous_inputs_are_read_as_their_values():
    x, weight, b = operands(2, 16, 16, 12, 20)
    channels_last = x.to(memory_format=torch.channels_last)
    view = torch.randn(2, 16, 12, 40)[..., ::2]
    close(winograd_conv2d(channels_last, weight, b, (1, 1)), F.conv2d(x, weight, b, padding=1))
    close(winograd_conv2d(view, weight, b, (1, 1)), F.conv2d(view, weight, b, padding=1))


@needs_compiler
@pytest.mark.parametrize("chunk_bytes", [36 * 4 * 8 * 24, 36 * 4 * 64 * 24, 36 * 4 * 40 * 40 * 3])
def test_chunked_convolution_equals_whole(monkeypatch, chunk_bytes):
    x, weight, b = operands(3, 24, 40, 20, 36)
    expected = F.conv2d(x, weight, b, padding=1)
    monkeypatch.setattr(winograd_conv, "CHUNK_BYTES", chunk_bytes)
    plan = plan_chunks(24, 40, 3 * 5, 9)
    assert len(plan.k_ranges) > 1 or len(plan.row_ranges) > 1
    close(winograd_conv2d(x, weight, b, (1, 1), False), expected)
    close(winograd_conv2d(x, weight, b, (1, 1), True), reference(x, weight, b, (1, 1), True))


def test_chunk_plan_covers_everything_and_keeps_the_cheaper_transform_inside(monkeypatch):
    monkeypatch.setattr(winograd_conv, "CHUNK_BYTES", 4 * 36 * 64 * 64)
    for channels, out_channels, rows, tiles_w in [(64, 512, 64, 8), (512, 64, 4, 64), (640, 640, 100, 100)]:
        plan = plan_chunks(channels, out_channels, rows, tiles_w)
        assert [k for r in plan.k_ranges for k in range(*r)] == list(range(out_channels))
        assert [t for r in plan.row_ranges for t in range(*r)] == list(range(rows))
        budget = winograd_conv.CHUNK_BYTES // 4  # floats; the smallest chunks (8 channels, 1 tile row) may exceed it
        assert 36 * plan.k_chunk * channels <= budget or plan.k_chunk == 8
        assert 36 * max(channels, plan.k_chunk) * plan.row_chunk * tiles_w <= budget or plan.row_chunk == 1
        if len(plan.k_ranges) > 1 and len(plan.row_ranges) > 1:
            redo_inputs = (len(plan.k_ranges) - 1) * channels * rows * tiles_w
            redo_filters = (len(plan.row_ranges) - 1) * out_channels * channels
            assert plan.filters_outer == (redo_inputs <= redo_filters)
    # both split: few tiles are cheaper to transform again than many filters, and the other way round
    assert plan_chunks(640, 640, 100, 2).filters_outer
    assert not plan_chunks(640, 640, 1000, 100).filters_outer


def padded_conv(channels=32, out_channels=32, kernel=3, circular=False) -> WidthCircularConv2d:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(channels, out_channels, kernel, padding=kernel // 2)
    set_width_circular_padding(conv, circular)
    return conv


@pytest.fixture
def winograd_calls(monkeypatch):
    import models.circular_padding

    calls = []

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return winograd_conv2d(*args, **kwargs)

    monkeypatch.setattr(models.circular_padding, "winograd_conv2d", spy)
    return calls


@needs_compiler
@pytest.mark.parametrize("circular", [False, True])
def test_padded_convs_take_winograd_on_large_enough_maps(winograd_calls, circular):
    conv = padded_conv(circular=circular)
    x = torch.randn(2, 32, 16, 32)  # 1024 output pixels
    with torch.no_grad():
        out = conv(x)
    assert winograd_calls == [x.shape]
    close(out, reference(x, conv.weight, conv.bias, (1, 1), circular))


def test_where_winograd_does_not_apply_torch_computes_it(winograd_calls):
    x = torch.randn(2, 32, 16, 32)
    with torch.no_grad():
        padded_conv(kernel=5)(x)  # not 3x3
        padded_conv()(x[:1, :, :8, :8])  # 64 output pixels
        padded_conv(channels=32, out_channels=3)(x)  # too few output channels
        padded_conv().double()(x.double())  # not fp32
        strided = padded_conv()
        strided.stride = (2, 2)
        strided(x)
    assert winograd_calls == []


def test_training_keeps_torch_convolution_and_its_gradients(winograd_calls):
    conv = padded_conv(circular=True)
    x = torch.randn(2, 32, 16, 32, requires_grad=True)
    conv(x).square().sum().backward()
    assert winograd_calls == []
    x_ref = x.detach().clone().requires_grad_()
    reference(x_ref, conv.weight, conv.bias, (1, 1), True).square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_traced_graphs_keep_torch_convolution(winograd_calls):
    torch._dynamo.reset()
    conv = padded_conv()
    x = torch.randn(2, 32, 16, 32)
    compiled = torch.compile(conv, backend="eager", fullgraph=True)  # fullgraph: a ctypes call would fail it
    with torch.no_grad():
        close(compiled(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
    assert winograd_calls == []
    torch._dynamo.reset()


def test_switched_off_by_the_environment(monkeypatch, winograd_calls):
    monkeypatch.setenv("DVD360_NATIVE_KERNELS", "0")
    x = torch.randn(2, 32, 16, 32)
    assert not winograd_applies(x, torch.randn(32, 32, 3, 3), (1, 1), (1, 1), (1, 1), 1)
    with torch.no_grad():
        padded_conv()(x)
    assert winograd_calls == []


def torch_computes_it(caplog, winograd_calls) -> list[str]:
    """Two convolutions with the native kernels unavailable: torch's result, no Winograd call; the native module's
    warnings."""
    x = torch.randn(2, 32, 16, 32)
    conv = padded_conv()
    with caplog.at_level(logging.WARNING, logger="models.native"), torch.no_grad():
        out = conv(x)
        conv(x)
    assert winograd_calls == []
    close(out, F.conv2d(x, conv.weight, conv.bias, padding=1))
    return [r.getMessage() for r in caplog.records if r.name == "models.native"]


@pytest.mark.parametrize("compiler", ["/nonexistent/cc", "false"])
def test_without_a_working_compiler_torch_computes_it(monkeypatch, tmp_path, caplog, winograd_calls, compiler):
    monkeypatch.setenv("DVD360_NATIVE_CACHE", str(tmp_path))  # nothing built there yet
    monkeypatch.setenv("CC", compiler)
    warnings = torch_computes_it(caplog, winograd_calls)
    assert len(warnings) == 1 and "torch's own" in warnings[0]  # once per process, not per call
    assert not list(tmp_path.glob("*.so"))  # no half-built library left behind


def test_no_cache_directory_means_torch_computes_it(monkeypatch, caplog):
    monkeypatch.delenv("DVD360_NATIVE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(native.Path, "home", staticmethod(no_home))
    with caplog.at_level(logging.WARNING, logger="models.native"):
        assert native.load("winograd_f43") is None
    assert "torch's own" in caplog.text


@needs_compiler
def test_library_is_built_once_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("DVD360_NATIVE_CACHE", str(tmp_path / "cache"))
    assert native.load("winograd_f43") is not None
    (built,) = (tmp_path / "cache").glob("winograd_f43-*.so")
    stamp = built.stat().st_mtime_ns
    native.load.cache_clear()
    assert native.load("winograd_f43") is not None
    assert built.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [built.name, built.name + ".sha256"]
    assert (tmp_path / "cache" / (built.name + ".sha256")).read_text().strip() == native._sha256(built)
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700


@needs_compiler
def test_builds_racing_for_the_same_file_both_succeed(tmp_path, compiler):
    target = tmp_path / "winograd_f43-race.so"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: native._build("winograd_f43", compiler, target), range(2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name, target.name + ".sha256"]  # no temporaries
    assert native._verified(target)
    assert ctypes.CDLL(str(target)).winograd_input


# A library someone else built: loading it runs its constructor, which leaves a file behind.
PLANTED = """
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(getenv("DVD360_PLANTED_MARKER"), "w");
    if (f) fclose(f);
}
"""


def plant(path: Path, compiler: str, source: str = PLANTED) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    (path.parent / "planted.c").write_text(source)
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(path), str(path.parent / "planted.c")], check=True)
    (path.parent / "planted.c").unlink()
    path.chmod(0o755)  # whatever the umask: only what the tests open up on purpose is writable by others
    return path


def record_digest(library: Path) -> None:
    """Write the digest a build records, as if this library had been built here."""
    digest = native._digest_path(library)
    digest.write_text(native._sha256(library))
    digest.chmod(0o644)


@pytest.fixture
def marker(monkeypatch, tmp_path) -> Path:
    path = tmp_path / "planted-library-ran"
    monkeypatch.setenv("DVD360_PLANTED_MARKER", str(path))
    return path


@needs_compiler
@pytest.mark.parametrize("writable", ["folder", "file"])
def test_a_library_others_could_have_written_is_never_loaded(monkeypatch, tmp_path, caplog, compiler, marker, writable):
    """Planted at the computed name, with its digest recorded: a folder (0777) or file (0666) open to others is
    refused before anything is loaded; torch's kernels run."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DVD360_NATIVE_CACHE", str(cache))
    target = plant(native.library_path("winograd_f43", compiler), compiler)
    record_digest(target)
    if writable == "folder":
        cache.chmod(0o777)
    else:
        target.chmod(0o666)
    with caplog.at_level(logging.WARNING, logger="models.native"):
        assert native.load("winograd_f43") is None
    assert not marker.exists()
    assert "no one else may write" in caplog.text and "torch's own" in caplog.text


@needs_compiler
def test_a_library_that_differs_from_the_build_is_built_again(monkeypatch, tmp_path, caplog, compiler, marker):
    monkeypatch.setenv("DVD360_NATIVE_CACHE", str(tmp_path / "cache"))
    assert native.load("winograd_f43") is not None
    target = native.library_path("winograd_f43", compiler)
    built = native._sha256(target)
    plant(target, compiler)  # replaced in place: same name, same owner and mode
    native.load.cache_clear()
    with caplog.at_level(logging.WARNING, logger="models.native"):
        library = native.load("winograd_f43", winograd_conv.SYMBOLS)
    assert not marker.exists()
    assert library is not None and native._sha256(target) == built
    assert "differs from the library built here" in caplog.text


@needs_compiler
def test_a_library_without_the_kernels_leaves_torch_computing(monkeypatch, tmp_path, caplog, compiler, winograd_calls):
    """A verified library (digest recorded, safe folder) that lacks the kernels' symbols: one warning, torch's
    convolution, the same result; not an AttributeError in the middle of a job."""
    monkeypatch.setenv("DVD360_NATIVE_CACHE", str(tmp_path / "cache"))
    target = plant(native.library_path("winograd_f43", compiler), compiler, "int winograd_filter;\n")
    record_digest(target)
    warnings = torch_computes_it(caplog, winograd_calls)
    assert len(warnings) == 1 and "lacks winograd_input, winograd_output" in warnings[0], warnings


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 error"), ("", "1 skipped")])
def test_without_a_compiler_ci_fails_where_a_developer_skips(tmp_path, ci, outcome):
    """The kernels' tests never skip silently in CI: with CI=true and no compiler they fail (an error at set-up)."""
    env = {**os.environ, "CI": ci, "CC": "/nonexistent/cc", "DVD360_NATIVE_CACHE": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", f"{__file__}::test_library_is_built_once_and_cached", "-q",
         "-p", "no:cacheprovider", "-o", "addopts="],
        env=env, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert outcome in run.stdout, run.stdout[-2000:]
    assert run.returncode == (1 if ci else 0)


@needs_compiler
def test_whole_pipeline_through_winograd_equals_torch(tiny_pipe, monkeypatch):
    """Every eligible conv of the tiny UNet and VAE through the C kernels: the video equals torch's to rounding."""
    import models.circular_padding

    shape = {"num_frames": 4, "height": 64, "width": 128, "num_inference_steps": 2, "seed": 3}
    monkeypatch.setenv("DVD360_NATIVE_KERNELS", "0")
    expected = tiny_pipe("a volcano", **shape).frames
    monkeypatch.setenv("DVD360_NATIVE_KERNELS", "1")
    native.load.cache_clear()
    monkeypatch.setattr(winograd_conv, "MIN_OUTPUT_PIXELS", 1)
    monkeypatch.setattr(winograd_conv, "MIN_CHANNELS", 1)
    calls = []
    monkeypatch.setattr(
        models.circular_padding, "winograd_conv2d", lambda *a, **k: calls.append(1) or winograd_conv2d(*a, **k)
    )
    frames = tiny_pipe("a volcano", **shape).frames
    assert len(calls) > 20  # UNet and VAE, zero- and circular-padded steps
    assert abs(frames - expected).max() < 1e-4
