"""Record torchvision's RAFT key layout and outputs, which tests/media/test_flow_raft.py checks ours against.

Needs torchvision, which does not import beside the project's CPU torch; run it from a venv of its own:
    python3.11 -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1
    PYTHONPATH=. /tmp/tv/bin/python scripts/record_raft_reference.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.models.optical_flow import raft_large, raft_small

from tests.media.raft_inputs import deterministic_weights, panorama_pair

OUT = Path(__file__).resolve().parents[1] / "tests" / "media" / "fixtures"


def main() -> None:
    first, second = panorama_pair()
    images = [torch.from_numpy(x).permute(2, 0, 1)[None].float() / 127.5 - 1 for x in (first, second)]
    layouts, flows = {}, {}
    for name, build in (("large", raft_large), ("small", raft_small)):
        model = build(weights=None).eval()
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        model.load_state_dict({k: torch.from_numpy(v) for k, v in deterministic_weights(shapes).items()})
        with torch.inference_mode():
            flows[name] = model(*images, num_flow_updates=12)[-1][0].numpy()
        layouts[name] = {k: list(s) for k, s in shapes.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "torchvision": torchvision.__version__, "num_flow_updates": 12}
    (OUT / "raft_keys.json").write_text(json.dumps({"recorded_with": meta, **layouts}, indent=1) + "\n")
    np.savez_compressed(OUT / "raft_reference_flows.npz", **flows)
    print(json.dumps({**meta, **{k: float(np.abs(v).mean()) for k, v in flows.items()}}))


if __name__ == "__main__":
    main()
