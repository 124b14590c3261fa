"""Raw flow fields stream in (issue 28, item 8): a legal raw flow at the bounds (16 fields of 8 MP, 141:1, a
7.6 MB upload) checked six times at once, as the API checks uploads in its request threads, grows the process by
at most 150 MB in all (it took about 1 GB when each field was read whole and copied); the streamed resampling
gives what resizing the whole field gives, and every value of a chosen field is still checked."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from models.media.errors import FlowInputError
from models.media.flow_video import load_flow_condition
from models.media.raw_flow import read_raw_flow, resize_flow
from tests.hostile_files import flow_at_the_bounds
from tests.hostile_memory import CHECK_SIZE, concurrent_check_growth

GROWTH_BUDGET_MB = 150


def test_six_checks_at_once_of_a_flow_at_the_bounds_stay_within_150_mb(tmp_path) -> None:
    path = flow_at_the_bounds(tmp_path / "bounds.npz")
    member = zipfile.ZipFile(path).infolist()[0]
    assert member.file_size == 2**30 + 128 and 130 < member.file_size / member.compress_size < 150
    assert path.stat().st_size < 8e6
    figures = concurrent_check_growth(path, "raw_flow", 6)
    assert figures["lengths"] == [16] * 6  # every check passed: the file is legal
    assert figures["growth_mb"] < GROWTH_BUDGET_MB, figures


@pytest.mark.parametrize(
    ("shape", "size", "dtype"),
    [
        ((3, 512, 1024), (64, 128), np.float32),  # the upload check: downscaled
        ((2, 300, 500), (64, 128), np.float64),  # no integer ratio; float64 values
        ((2, 32, 64), (64, 128), np.float32),  # upscaled
        ((2, 100, 7), (64, 128), np.int16),  # narrower than the output; integer values
        ((1, 1, 3000), (64, 128), np.float32),  # one row
        ((2, 333, 777), (512, 1024), np.float32),  # the worker's size
        ((2, 64, 128), (64, 128), np.float32),  # already the size
    ],
)
def test_streamed_fields_equal_the_whole_field_resized(tmp_path, shape, size, dtype) -> None:
    flow = (np.random.default_rng(0).standard_normal((*shape, 2)) * 10).astype(dtype)
    np.save(tmp_path / "flow.npy", flow)
    np.savez_compressed(tmp_path / "flow.npz", flow=flow)
    expected = resize_flow(flow.astype(np.float32), *size)
    for name in ("flow.npy", "flow.npz"):
        streamed = read_raw_flow(tmp_path / name, None, size)
        assert streamed.shape == expected.shape and streamed.dtype == np.float32
        np.testing.assert_allclose(streamed, expected, rtol=0, atol=1e-6 * np.abs(expected).max())
        np.testing.assert_array_equal(read_raw_flow(tmp_path / name), flow.astype(np.float32))


def test_a_bad_value_anywhere_in_a_chosen_field_is_refused(tmp_path) -> None:
    """Row 1 of a 512-row field is never read by resampling it to 64 rows, and is still checked."""
    flow = np.zeros((2, 512, 1024, 2), np.float32)
    flow[1, 1, 3, 0] = np.inf
    np.save(tmp_path / "flow.npy", flow)
    with pytest.raises(FlowInputError, match="NaN or infinite"):
        load_flow_condition(tmp_path / "flow.npy", "raw_flow", *CHECK_SIZE, loop=True)
    wide = np.zeros((2, 512, 1024, 2), np.float64)
    wide[1, 1, 3, 0] = 1e39  # finite in float64, infinite in float32: refused as before
    np.save(tmp_path / "flow.npy", wide)
    with pytest.raises(FlowInputError, match="NaN or infinite"):
        read_raw_flow(tmp_path / "flow.npy", None, (64, 128))
