"""360 Text Fusion: perspective views, captioners (a tiny random BLIP), fusion over HTTP, resumable CSV."""

import socket

import numpy as np
import pytest

from models.training.dataset import read_caption_csv
from models.training.fusion_client import FUSION_INSTRUCTION, FusionClient, FusionError, FusionSettings
from models.training.text_fusion import caption_videos, perspective_views
from tests.training.chat_double import ChatEndpointDouble
from tests.training.conftest import CLIPS, erp_texture

CAPTIONS = ["a sandy beach", "a wooden pier", "palm trees", "a blue sea"]


@pytest.fixture
def endpoint():
    with ChatEndpointDouble() as double:
        yield double


def _client(endpoint, **kw):
    delays = []
    settings = FusionSettings(base_url=endpoint.base_url, model="local-llm", api_key_env="DVD360_TEST_KEY", **kw)
    return FusionClient(settings, sleep=delays.append), delays


def test_fusion_posts_a_chat_completion_with_the_instruction_and_views(endpoint, monkeypatch):
    monkeypatch.setenv("DVD360_TEST_KEY", "secret-key")
    client, _ = _client(endpoint)
    fused = client.fuse(CAPTIONS)
    assert fused.startswith("fused: ") and not fused.endswith('"')  # quotes around the answer are stripped
    [request] = endpoint.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer secret-key"
    body = request["body"]
    assert body["model"] == "local-llm"
    assert body["messages"][0] == {"role": "system", "content": FUSION_INSTRUCTION}
    user = body["messages"][1]["content"]
    for view, caption in zip(("front", "right", "left", "back"), CAPTIONS, strict=True):
        assert f"{view}: {caption}" in user


def test_no_key_means_no_authorization_header(endpoint, monkeypatch):
    monkeypatch.delenv("DVD360_TEST_KEY", raising=False)
    client, _ = _client(endpoint)
    client.fuse(CAPTIONS)
    assert "Authorization" not in endpoint.requests[0]["headers"]


def test_transient_errors_are_retried_with_exponential_backoff(endpoint):
    endpoint.script = [(500, {"error": "boom"}), (429, {"error": "slow down"}), (200, "not json"), (200, None)]
    client, delays = _client(endpoint, backoff_s=0.5)
    assert client.fuse(CAPTIONS).startswith("fused: ")
    assert len(endpoint.requests) == 4 and delays == [0.5, 1.0, 2.0]


def test_gives_up_after_the_retries(endpoint):
    endpoint.script = [(503, {})] * 10
    client, delays = _client(endpoint, retries=2)
    with pytest.raises(FusionError, match="3 attempts"):
        client.fuse(CAPTIONS)
    assert len(endpoint.requests) == 3 and len(delays) == 2


def test_client_errors_are_not_retried(endpoint):
    endpoint.script = [(401, {"error": "bad key"})]
    client, delays = _client(endpoint)
    with pytest.raises(FusionError, match="401"):
        client.fuse(CAPTIONS)
    assert len(endpoint.requests) == 1 and delays == []


def test_unreachable_endpoint_is_retried_then_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    delays = []
    client = FusionClient(FusionSettings(base_url=f"http://127.0.0.1:{port}/v1", retries=1), sleep=delays.append)
    with pytest.raises(FusionError, match="Connect"):
        client.fuse(CAPTIONS)
    assert len(delays) == 1


def test_four_views_look_in_four_directions():
    erp = erp_texture(64, 128, seed=3)
    views = perspective_views(erp, size=32)
    assert len(views) == 4 and all(v.shape == (32, 32, 3) and v.dtype == np.uint8 for v in views)
    # front and back look at opposite sides: rolling the panorama half a turn swaps them
    swapped = perspective_views(np.roll(erp, 64, axis=1), size=32)
    assert np.abs(swapped[0].astype(int) - views[3].astype(int)).mean() < 3
    assert np.abs(views[0].astype(int) - views[3].astype(int)).mean() > 5


class RecordingCaptioner:
    """Captions each view by its mean brightness, so the test can see four distinct views arrived."""

    def __init__(self) -> None:
        self.calls: list[list[np.ndarray]] = []

    def caption(self, images):
        self.calls.append(images)
        return [f"view {i} brightness {int(image.mean())}" for i, image in enumerate(images)]


def test_caption_videos_writes_a_resumable_dataset_csv(clean_data, endpoint, tmp_path):
    out = tmp_path / "captions.csv"
    captioner = RecordingCaptioner()
    client, _ = _client(endpoint, retries=0)
    endpoint.script = [(200, None), (503, {})]  # the second video fails once (no retries): it is left for later
    report = caption_videos(clean_data["videos"], out, captioner, client, view_size=32)
    assert len(report.written) == len(CLIPS) - 1 and len(report.failed) == 1
    assert all(len(call) == 4 and call[0].shape == (32, 32, 3) for call in captioner.calls)
    rows = read_caption_csv(out)
    assert all(row["name"].startswith("fused: front: view 0") for row in rows)

    out.write_bytes(out.read_bytes() + b'half_written_id,"a capt')  # a crash in the middle of a row
    again = caption_videos(clean_data["videos"], out, captioner, client, view_size=32)
    assert list(again.failed) == [] and again.written == list(report.failed)
    assert len(again.skipped) == len(CLIPS) - 1
    rows = read_caption_csv(out)
    assert sorted(r["videoid"] for r in rows) == sorted(c[0] for c in CLIPS)
    requests = len(endpoint.requests)
    caption_videos(clean_data["videos"], out, captioner, client, view_size=32)
    assert len(endpoint.requests) == requests  # everything done: nothing is asked again


def _tiny_blip(folder):
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor

    try:
        from transformers import BlipImageProcessorPil as ImageProcessor  # transformers 5 without torchvision
    except ImportError:
        from transformers import BlipImageProcessor as ImageProcessor
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "beach", "forest", "sky", "sea", "tree"]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, bos_token="[DEC]")
    processor = BlipProcessor(image_processor=ImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    text = {"vocab_size": len(words), "hidden_size": 32, "encoder_hidden_size": 32, "intermediate_size": 64}
    text |= {"num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 40}
    text |= {"bos_token_id": 5, "pad_token_id": 0, "sep_token_id": 3, "eos_token_id": 3}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    vision |= {"image_size": 32, "patch_size": 8}
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=32))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return set(words)


def test_blip_captioner_from_local_weights(tmp_path):
    from models.training.captioner import BlipCaptioner

    vocabulary = _tiny_blip(tmp_path / "blip")
    captioner = BlipCaptioner.from_pretrained(tmp_path / "blip", device="cpu", max_new_tokens=4)
    views = perspective_views(erp_texture(64, 128), size=48)
    captions = captioner.caption(views)
    assert len(captions) == 4
    assert all(c and set(c.split()) <= vocabulary - {"[PAD]", "[CLS]", "[SEP]", "[DEC]"} for c in captions)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        BlipCaptioner.from_pretrained(tmp_path / "missing")
