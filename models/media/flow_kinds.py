"""The kinds of motion upload, without importing any decoder (the CLI and the API name them at start-up)."""

FLOW_KINDS = ("flow_video", "raw_flow", "panorama_clip")
RAW_FLOW_SUFFIXES = (".npy", ".npz", ".flo")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi")
