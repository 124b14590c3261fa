# GPU worker image: CUDA runtime, CUDA torch, xformers, fp16 inference. Weights are mounted at /weights
# together with the model registry file that names them (DVD360_MODEL_REGISTRY); nothing is downloaded at run
# time. Build from the repository root: docker build -f docker/worker.Dockerfile -t dvd360-worker .
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

# torch and xformers must come from the same CUDA build; bump them together.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG XFORMERS_VERSION=0.0.35

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PATH=/opt/venv/bin:$PATH

# Ubuntu's python3 (3.12) in a venv: PEP 668 forbids pip into the system interpreter.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin dvd360 \
    && mkdir /data /models /compile-cache && chown dvd360 /data /models /compile-cache

RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}" \
    && pip install "xformers==${XFORMERS_VERSION}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY models models
COPY core core
COPY api api
COPY worker worker
COPY cli cli
# Versions are pinned in pyproject.toml, which this installs.
# hadolint ignore=DL3013
RUN pip install ".[worker]"

USER 10001
ENV DVD360_HEARTBEAT_FILE=/tmp/dvd360-worker.heartbeat
# A busy worker (concurrency 1) cannot answer `celery inspect ping`; a heartbeat file written by a thread in
# the worker process says whether the process is alive instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["dvd360", "worker-alive", "--max-age", "90"]
CMD ["dvd360", "worker", "--concurrency", "1"]
