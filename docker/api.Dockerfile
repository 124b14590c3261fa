# API image: slim CPU Python, no torch (the API process never imports it), non-root, with the web page.
# Build from the repository root: docker build -f docker/api.Dockerfile -t dvd360-api .
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY api/web/package.json api/web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY api/web ./
RUN npm run build

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Uploads are checked in /tmp and kept in S3: the API needs no volume of its own.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin dvd360
WORKDIR /app

COPY pyproject.toml README.md ./
COPY models models
COPY core core
COPY api api
COPY worker worker
COPY cli cli
COPY --from=web /web/dist api/web/dist
# Versions are pinned in pyproject.toml, which this installs.
# hadolint ignore=DL3013
RUN pip install ".[api]"

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["dvd360", "api", "--host", "0.0.0.0", "--port", "8000"]
