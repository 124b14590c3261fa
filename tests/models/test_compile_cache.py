"""torch.compile's caches persist across processes (issue 27): a restarted worker compiles nothing new."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A fresh process: point the caches at a folder as `enable_compile(cache_dir=...)` does, compile a small module
# with inductor, run it once, report inductor's and AOTAutograd's cache counters. One convolution: inductor emits
# an external call and no C++ kernel, so the test spends its time in the cache machinery, not in the compiler
# (the UNet's graphs go through the same FX graph and AOTAutograd caches, keyed the same way).
CHILD = """
import json, sys
import torch
from torch._dynamo.utils import counters
from models.devices import configure_compile_cache

configure_compile_cache(sys.argv[1])


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


torch.manual_seed(0)
block = Block().eval()
block.compile(backend="inductor")
with torch.no_grad():
    out = block(torch.randn(1, 4, 8, 16))
report = {"inductor": dict(counters["inductor"]), "aot": dict(counters["aot_autograd"]), "sum": out.sum().item()}
print(json.dumps(report))
"""


def compile_in_a_fresh_process(cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR_", "TRITON_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"  # compile in the process: no pool of compile workers to start
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(cache)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.timeout(240)  # two cold Python + torch + inductor starts: 29 s on 2 quiet cores, 80-90 s shared
def test_a_restarted_process_compiles_nothing_new(tmp_path):
    first = compile_in_a_fresh_process(tmp_path / "cache")
    assert first["inductor"].get("fxgraph_cache_miss") == 1 and not first["inductor"].get("fxgraph_cache_hit")
    assert (tmp_path / "cache" / "fxgraph").is_dir()
    again = compile_in_a_fresh_process(tmp_path / "cache")
    assert again["inductor"].get("fxgraph_cache_hit") == 1 and not again["inductor"].get("fxgraph_cache_miss")
    assert again["aot"].get("autograd_cache_hit") == 1 and not again["aot"].get("autograd_cache_miss")
    assert again["sum"] == first["sum"]
