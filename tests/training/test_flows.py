"""`data flows`: flow videos for a dataset, parallel, resumable, atomic; corrupt inputs reported, not fatal."""

import numpy as np

from models.media.video_reader import read_frames
from models.training.flow_codec import decode_flow_colours
from models.training.flows import extract_dataset_flows
from tests.training.conftest import CLIP_FRAMES, CLIPS, H, W, turning_clip, write_mp4

WORKERS = 2  # a real process pool


def test_flow_videos_are_written_with_the_right_motion_and_resume(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i, (videoid, _, speed) in enumerate(CLIPS):
        write_mp4(turning_clip(speed, seed=i)[0], videos / f"{videoid}.mp4")
    (videos / "broken.mp4").write_bytes(b"not a video at all")
    flows = tmp_path / "flows"

    report = extract_dataset_flows(videos, flows, workers=WORKERS, size=(H, W))
    assert sorted(p.name for p in report.written) == sorted(f"{c[0]}.mp4" for c in CLIPS)
    assert list(report.failed) == [str(videos / "broken.mp4")]
    assert sorted(p.name for p in flows.iterdir()) == sorted(f"{c[0]}.mp4" for c in CLIPS)  # no partial files
    for videoid, _, speed in CLIPS:
        colours = read_frames(flows / f"{videoid}.mp4")
        assert colours.shape == (CLIP_FRAMES - 1, H, W, 3)
        u = np.median(decode_flow_colours(colours)[..., 0])
        assert abs(u - speed) < 0.75, (videoid, u, speed)

    stamps = {p.name: p.stat().st_mtime_ns for p in flows.iterdir()}
    again = extract_dataset_flows(videos, flows, workers=WORKERS, size=(H, W))
    assert again.written == [] and len(again.skipped) == len(CLIPS)
    assert {p.name: p.stat().st_mtime_ns for p in flows.iterdir()} == stamps

    (flows / "still.mp4").unlink()
    third = extract_dataset_flows(videos, flows, workers=WORKERS, size=(H, W))
    assert [p.name for p in third.written] == ["still.mp4"]
