"""Errors about users' media files, with messages that say what to change. Torch-free."""


class FlowInputError(ValueError):
    """A motion upload cannot be used as a flow condition (unreadable, empty, wrong shape...)."""


class VideoFileError(ValueError):
    """A video file cannot be processed as asked (fragmented, not H.264, truncated, not an MP4...)."""
