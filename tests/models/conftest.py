import pytest

from models.tiny import build_tiny_pipeline


@pytest.fixture(scope="session")
def tiny_pipe():
    """One tiny pipeline for the session; tests must leave it as they found it."""
    return build_tiny_pipeline(seed=0)
