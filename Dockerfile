# syntax=docker/dockerfile:1
# One image recipe for the seven services; SERVICE says which one the image runs. Build from
# the repository root (every service needs libs/common and constraints.txt beside its code):
#   docker build --build-arg SERVICE=gateway -t ctrops-gateway:0.1.0 .
#   docker compose build                      # all seven, each with its SERVICE
# Needs BuildKit (Docker's default builder since 23.0): it builds only the stages the chosen
# service reaches, so the four services without torch never download it.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
# gateway, ingest, trainer, explainer, reporter, monitor or scorer (no default: an image must
# say what it is; an unknown name fails at `FROM build-${SERVICE}`).
ARG SERVICE

# --- build: a virtualenv in /opt/venv with the pinned dependencies, libs/common and the service

FROM ${PYTHON_IMAGE} AS build-base
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    COMMON_REQUIREMENT=./libs/common
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY constraints.txt ./

FROM build-base AS build-torch
# The CPU build of PyTorch, pinned: PyPI's Linux wheel of the same version is the CUDA build
# (gigabytes of NVIDIA libraries these images never use). The +cpu local version still satisfies
# the torch==2.13.0 pin in constraints.txt and pyproject.toml, so pip keeps it below.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints.txt "torch==2.13.0+cpu"
# The model-side extras of the shared library (torch, LightGBM, SciPy).
ENV COMMON_REQUIREMENT=./libs/common[ml]

# Where each service's build starts: the three that import torch from build-torch.
FROM build-base AS build-gateway
FROM build-base AS build-ingest
FROM build-torch AS build-trainer
FROM build-torch AS build-explainer
FROM build-base AS build-reporter
FROM build-base AS build-monitor
FROM build-torch AS build-scorer

# hadolint ignore=DL3006
FROM build-${SERVICE} AS build
ARG SERVICE
# Restated from build-base (already set there) for linters, which cannot follow a FROM named
# by an ARG.
ENV PIP_NO_CACHE_DIR=1
WORKDIR /src
# Dependencies first, from the pyproject files alone (empty src folders build metadata-only
# wheels), so a code change reuses this layer instead of reinstalling every pinned package.
COPY libs/common/pyproject.toml libs/common/
COPY services/${SERVICE}/pyproject.toml services/${SERVICE}/
RUN mkdir -p libs/common/src "services/${SERVICE}/src" \
 && pip install -c constraints.txt "${COMMON_REQUIREMENT}" "./services/${SERVICE}"

# Then the code: only the shared library and this service, never tests or other services.
# pip check fails the build on an inconsistent environment; the last line fails it if pip
# replaced the CPU torch with a CUDA one (and passes where there is no torch at all).
COPY libs/common/src/ libs/common/src/
COPY services/${SERVICE}/src/ services/${SERVICE}/src/
RUN pip install --no-deps --force-reinstall ./libs/common "./services/${SERVICE}" \
 && pip check \
 && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None and __import__('torch').version.cuda is not None)"

# --- runtime: the base image, a non-root user, the virtualenv; per service its ports and probe

FROM ${PYTHON_IMAGE} AS runtime-base
# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER, and the
# shared /data volume keeps one owner whichever service image created it.
RUN groupadd --system --gid 10001 ctrops \
 && useradd --system --uid 10001 --gid ctrops --home-dir /home/ctrops --create-home --shell /usr/sbin/nologin ctrops \
 && install -d -o ctrops -g ctrops -m 0770 /data
# Caches go under /tmp: Kubernetes mounts the root filesystem read-only (and /tmp as emptyDir).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CTROPS_DATA_DIR=/data \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache

FROM runtime-base AS runtime-models
# LightGBM (the challenger model) needs the system OpenMP runtime, which slim images lack.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1=12.2.0-14+deb12u1 \
 && rm -rf /var/lib/apt/lists/*

# Per service: the address it listens on, its ports, its probe and its command. slim images
# have no curl, so each probe is a line of Python; any non-2xx or refused connection raises,
# so the exit code is non-zero exactly when /healthz does not answer 200.

# The public REST + WebSocket API (port 8000: API, /healthz, /readyz, /metrics).
FROM runtime-base AS runtime-gateway
ENV CTROPS_GATEWAY_HOST=0.0.0.0
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = int(os.environ.get('CTROPS_GATEWAY_PORT') or 8000); urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
CMD ["python", "-m", "ctrops_gateway"]

# Upload validation, profiling and conversion.
FROM runtime-base AS runtime-ingest
ENV CTROPS_HTTP_HOST=0.0.0.0
EXPOSE 8101
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = int(os.environ.get('CTROPS_HTTP_PORT') or 0) or 8101; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
CMD ["python", "-m", "ctrops_ingest"]

# LSTM+MLP CTR training with MLflow tracking; also the image of the MLflow server in compose.
FROM runtime-models AS runtime-trainer
ENV CTROPS_HTTP_HOST=0.0.0.0
EXPOSE 8102
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = int(os.environ.get('CTROPS_HTTP_PORT') or 0) or 8102; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
CMD ["python", "-m", "ctrops_trainer"]

# LIME feature importance, statistics and correlation.
FROM runtime-models AS runtime-explainer
ENV CTROPS_HTTP_HOST=0.0.0.0
EXPOSE 8103
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = int(os.environ.get('CTROPS_HTTP_PORT') or 0) or 8103; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
CMD ["python", "-m", "ctrops_explainer"]

# The Korean marketing report and its PDF.
FROM runtime-base AS runtime-reporter
ENV CTROPS_HTTP_HOST=0.0.0.0
EXPOSE 8104
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = int(os.environ.get('CTROPS_HTTP_PORT') or 0) or 8104; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
CMD ["python", "-m", "ctrops_reporter"]

# Model and system performance, alerts.
FROM runtime-base AS runtime-monitor
ENV CTROPS_HTTP_HOST=0.0.0.0
EXPOSE 8105
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = int(os.environ.get('CTROPS_HTTP_PORT') or 0) or 8105; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
CMD ["python", "-m", "ctrops_monitor"]

# Scores rows with a trained run's model (online API for the gateway, batch jobs from Kafka)
# and turns each scored batch into a monitoring period (quality, calibration, drift).
FROM runtime-models AS runtime-scorer
ENV CTROPS_HTTP_HOST=0.0.0.0 \
    CTROPS_SCORER_API_HOST=0.0.0.0
# 8106: health and metrics (CTROPS_HTTP_PORT); 8090: the internal prediction API the gateway calls
# (CTROPS_SCORER_API_PORT; never published, only the gateway reaches it).
EXPOSE 8106 8090
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = int(os.environ.get('CTROPS_HTTP_PORT') or 0) or 8106; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
CMD ["python", "-m", "ctrops_scorer"]

# The image: the chosen service's runtime with the virtualenv built for it.
# hadolint ignore=DL3006
FROM runtime-${SERVICE} AS runtime
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/ctrops
