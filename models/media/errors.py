"""Errors about users' media files, with messages that say what to change. Torch-free."""


class FlowInputError(ValueError):
    """A motion upload cannot be used as a flow condition (unreadable, empty, wrong shape...)."""
