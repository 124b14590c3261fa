"""Raw optical flow files (.npy, .npz, Middlebury .flo) read within fixed bounds, whatever the file claims.

Sizes come from the headers (the zip end record and central directory, the array header inside the member, the
.flo header) and are checked before anything is allocated; then only the frames asked for are read, one at a
time, each in pieces of READ_BYTES as it streams in: of a field resized on the way, only the rows and columns
that linear resampling reads are kept (a few MB for any field at the upload check's size, however large the
field). A zip member never inflates past the size its directory entry declares (zipfile stops there), so the
declared sizes bound the decoding work too.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from models.media.errors import FlowInputError

FLO_MAGIC = 202021.25
MAX_FLOW_BYTES = 2**30  # declared array data: bounds the reading work (about a second) and the whole-file reads
MAX_FIELD_PIXELS = 4096 * 2048  # one flow field, as large as the largest accepted video frame
MAX_MEMBERS = 16  # a flow archive holds one array (numpy.savez): a huge directory is an attack on memory
MAX_ZIP_RATIO = 200  # deflate reaches ~1000:1 only on constant data; a bomb's tell
RATIO_FLOOR = 16 * 2**20  # small members may compress as well as they like
EOCD = struct.Struct("<4s4H2LH")  # zip end of central directory record
READ_BYTES = 1 << 20  # one read of flow data: what reading holds at once, beside the values it keeps


@dataclass(frozen=True)
class FlowLayout:
    """What a header declares: fields of height x width x 2 values of `dtype`, in C order from the stream."""

    frames: int
    height: int
    width: int
    dtype: np.dtype

    @property
    def field_bytes(self) -> int:
        return self.height * self.width * 2 * self.dtype.itemsize


def resize_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resample (F, H, W, 2) flow fields to the output size; vectors are in pixels, so they scale with the size."""
    scale = np.array([width / flow.shape[2], height / flow.shape[1]], np.float32)
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) * scale for f in flow])


def _checked_layout(name: str, shape: tuple[int, ...], dtype: np.dtype, data_bytes: int) -> FlowLayout:
    if dtype.hasobject or dtype.kind not in "fiu":
        raise FlowInputError(f"{name}: holds {dtype} values; flow must be numbers (save a float32 array)")
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or shape[-1] != 2 or shape[0] == 0:
        raise FlowInputError(f"{name}: flow must be shaped (frames, H, W, 2) of numbers, got {shape}")
    frames, height, width, _ = shape
    if min(height, width) <= 0 or height * width > MAX_FIELD_PIXELS:
        raise FlowInputError(
            f"{name}: a {width} x {height} flow field is outside the accepted sizes (at most "
            f"{MAX_FIELD_PIXELS // 2**20} MP); resize the flow to the video size, like 1024 x 512"
        )
    layout = FlowLayout(frames, height, width, dtype)
    declared = frames * layout.field_bytes
    if declared > MAX_FLOW_BYTES:
        raise FlowInputError(
            f"{name}: declares {frames} fields of {width} x {height} ({declared / 2**30:.1f} GiB), above the "
            f"{MAX_FLOW_BYTES // 2**30} GiB limit; send fewer frames or float32 values"
        )
    if declared != data_bytes:
        raise FlowInputError(f"{name}: the header declares shape {shape} ({declared} bytes) but {data_bytes} follow")
    return layout


def _npy_layout(name: str, stream: BinaryIO, size: int) -> FlowLayout:
    """The array header of a .npy (file or archive member of `size` bytes), read without reading the data."""
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise FlowInputError(f"{name}: unknown .npy version {version}; save the flow with numpy.save")
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(stream)  # numpy caps the header text at 10 kB
    if fortran_order:
        raise FlowInputError(f"{name}: the array is in Fortran order; save numpy.ascontiguousarray(flow)")
    return _checked_layout(name, shape, dtype, size - stream.tell())


def _flo_layout(name: str, stream: BinaryIO, size: int) -> FlowLayout:
    """Middlebury .flo: float32 magic 202021.25, int32 width and height, then H x W x 2 float32."""
    head = stream.read(12)
    if len(head) < 12 or struct.unpack("<f", head[:4])[0] != FLO_MAGIC:
        raise FlowInputError(f"{name}: not a Middlebury .flo file (wrong magic number)")
    width, height = struct.unpack("<ii", head[4:])
    if width <= 0 or height <= 0:
        raise FlowInputError(f"{name}: .flo header says {width} x {height}, which does not match its data")
    return _checked_layout(name, (1, height, width, 2), np.dtype("<f4"), size - 12)


def _archive_member(name: str, file: BinaryIO, size: int, stack: ExitStack) -> tuple[BinaryIO, int]:
    """The array member of a .npz (`flow`, else the first array), checked from the end record and directory."""
    tail_at = max(0, size - EOCD.size - 65535)  # the end record sits within the last 64 kB (its comment)
    file.seek(tail_at)
    tail = file.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < EOCD.size:
        raise FlowInputError(f"{name}: not a zip archive; save the flow with numpy.savez or numpy.save")
    *_, entries, directory_bytes, _, _ = EOCD.unpack_from(tail, at)
    # zipfile reads the whole directory and parses every entry in it: both are bounded (zip64 reads as 0xFFFF...)
    if entries > MAX_MEMBERS or directory_bytes > MAX_MEMBERS * 1024:
        raise FlowInputError(
            f"{name}: the archive lists {entries} entries in {directory_bytes} bytes; a flow archive holds one array"
        )
    file.seek(0)
    archive = stack.enter_context(zipfile.ZipFile(file))
    arrays = [info for info in archive.infolist() if info.filename.endswith(".npy")]
    if not arrays:
        raise FlowInputError(f"{name}: the archive holds no arrays")
    info = next((i for i in arrays if i.filename == "flow.npy"), arrays[0])
    if info.file_size > MAX_FLOW_BYTES + 2**16:
        raise FlowInputError(
            f"{name}: member {info.filename} inflates to {info.file_size / 2**30:.1f} GiB, above the "
            f"{MAX_FLOW_BYTES // 2**30} GiB limit; send fewer frames or float32 values"
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > RATIO_FLOOR and ratio > MAX_ZIP_RATIO:
        raise FlowInputError(
            f"{name}: member {info.filename} is compressed {ratio:.0f}:1 (a zip bomb's ratio; at most "
            f"{MAX_ZIP_RATIO}:1 above {RATIO_FLOOR // 2**20} MB); save it with numpy.savez, uncompressed"
        )
    return stack.enter_context(archive.open(info)), info.file_size


def _open_flow(path: Path, stack: ExitStack) -> tuple[BinaryIO, FlowLayout]:
    """The stream positioned at the first field, and what its header declares."""
    file = stack.enter_context(path.open("rb"))
    size = os.fstat(file.fileno()).st_size
    suffix = path.suffix.lower()
    if suffix == ".flo":
        return file, _flo_layout(path.name, file, size)
    if suffix == ".npz":
        file, size = _archive_member(path.name, file, size, stack)
    return file, _npy_layout(path.name, file, size)


def _linear_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of `target` samples along an axis of `source`, the two source indices and the second one's weight
    that cv2.resize's INTER_LINEAR uses (centres aligned; clamped at the borders, in float32 like OpenCV)."""
    position = ((np.arange(target) + 0.5) * (1.0 / (target / source)) - 0.5).astype(np.float32)
    first = np.floor(position).astype(np.int64)
    weight = position - first.astype(np.float32)
    weight[(first < 0) | (first >= source - 1)] = 0
    first = np.clip(first, 0, source - 1)
    return first, np.minimum(first + 1, source - 1), weight


def _read_field(name: str, stream: BinaryIO, layout: FlowLayout, size: tuple[int, int] | None) -> np.ndarray:
    """One field as float32 (H, W, 2), resampled to size=(H, W) when given (vectors scaled with it, as
    `resize_flow`; equal to it to float rounding). Read in pieces of READ_BYTES, every value checked finite; of a
    resized field only the rows and columns linear resampling reads are kept."""
    height, width = size or (layout.height, layout.width)
    row_a, row_b, row_weight = _linear_taps(layout.height, height)
    col_a, col_b, col_weight = _linear_taps(layout.width, width)
    rows, cols = np.union1d(row_a, row_b), np.union1d(col_a, col_b)
    kept = np.empty((len(rows), len(cols), 2), np.float32)
    pixels, per_read = layout.height * layout.width, max(1, READ_BYTES // (2 * layout.dtype.itemsize))
    # flat indices (row-major, ascending) of the kept values; None: every value is kept
    wanted = None if kept.size == 2 * pixels else (rows[:, None] * layout.width + cols[None, :]).ravel()
    into, start, at = kept.reshape(-1, 2), 0, 0
    while start < pixels:
        count = min(per_read, pixels - start)
        data = stream.read(count * 2 * layout.dtype.itemsize)
        if len(data) != count * 2 * layout.dtype.itemsize:
            raise FlowInputError(f"{name}: the flow data ends early (truncated file)")
        with np.errstate(over="ignore"):  # a value beyond float32 becomes infinite: refused just below
            values = np.frombuffer(data, layout.dtype).reshape(count, 2).astype(np.float32)
        if not np.isfinite(values).all():
            raise FlowInputError(f"{name}: flow holds NaN or infinite values")
        if wanted is None:
            into[start : start + count] = values
        else:
            end = int(np.searchsorted(wanted, start + count))
            into[at:end] = values[wanted[at:end] - start]
            at = end
        start += count
    if size is None or (height, width) == (layout.height, layout.width):
        return kept
    one = np.float32(1)
    a, b = np.searchsorted(cols, col_a), np.searchsorted(cols, col_b)
    across = kept[:, a] * (one - col_weight)[None, :, None] + kept[:, b] * col_weight[None, :, None]
    a, b = np.searchsorted(rows, row_a), np.searchsorted(rows, row_b)
    field = across[a] * (one - row_weight)[:, None, None] + across[b] * row_weight[:, None, None]
    return field * np.array([width / layout.width, height / layout.height], np.float32)


def _skip(name: str, stream: BinaryIO, count: int) -> None:
    """Past `count` bytes: a file seeks; an archive member inflates them, READ_BYTES at a time (zipfile's own seek
    would read 16 MB at once)."""
    if not isinstance(stream, zipfile.ZipExtFile):
        stream.seek(count, os.SEEK_CUR)
        return
    while count > 0:
        skipped = len(stream.read(min(count, READ_BYTES)))
        if not skipped:
            raise FlowInputError(f"{name}: the flow data ends early (truncated file)")
        count -= skipped


@contextmanager
def _opened(path: Path) -> Iterator[tuple[BinaryIO, FlowLayout]]:
    """The stream at the first field and its checked layout; any failure to read it is a FlowInputError."""
    try:
        with ExitStack() as stack:
            yield _open_flow(path, stack)
    except FlowInputError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:  # bad headers, zips
        raise FlowInputError(f"{path.name}: not a readable flow array ({exc}); save it with numpy.save") from exc


def raw_flow_count(path: str | Path) -> int:
    """How many fields a raw flow file declares (its header only: nothing is read past it)."""
    with _opened(Path(path)) as (_, layout):
        return layout.frames


def read_raw_flow(
    path: str | Path,
    choose: Callable[[int], Sequence[int]] | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """(F, H, W, 2) float32 flow from .npy, .npz (array `flow` or the first array) or .flo: the fields
    `choose(frame count)` picks (all when None), in that order, each resized to size=(H, W) when given."""
    path = Path(path)
    with _opened(path) as (stream, layout):
        wanted = list(range(layout.frames)) if choose is None else [int(i) for i in choose(layout.frames)]
        fields, position = {}, 0
        for index in sorted(set(wanted)):  # forward only: archive members cannot seek back cheaply
            if not 0 <= index < layout.frames:
                raise FlowInputError(f"{path.name}: has {layout.frames} fields, not field {index}")
            _skip(path.name, stream, (index - position) * layout.field_bytes)
            fields[index] = _read_field(path.name, stream, layout, size)
            position = index + 1
    return np.stack([fields[i] for i in wanted])
