"""The one error pulling raises; its message names the file and says what to do."""


class PullError(RuntimeError):
    """A download, checksum, disk or catalogue problem that stopped a pull."""
