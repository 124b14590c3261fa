"""360DVD panorama video model and pure media code. Never imports FastAPI, Celery or boto3.

Importing this package (and `models.registry`, `models.media`) must not import torch: the API process uses
them without it. Torch-using modules import it themselves.
"""

import os

# OpenMP threads that wait by yielding, not spinning (an operator's own OMP_WAIT_POLICY wins). Measured on a 2-core
# machine with other processes running: the tiny model's 4 steps took 16.5 s with torch's two spinning threads and
# 2.3 s with PASSIVE (1 thread: 2.0 s). Set before torch loads libgomp, which every torch-using module imports
# after this package.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
