"""Errors the model raises with messages a user or operator can act on. Torch-free."""


class CheckpointError(ValueError):
    """A weight file is missing, unreadable or does not match the expected key layout."""


class GenerationCanceled(RuntimeError):
    """The caller asked to stop; raised between denoising steps."""

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"generation canceled after {step} of {total} denoising steps")
        self.step = step
        self.total = total
