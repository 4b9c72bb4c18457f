# The runtime image: model serving (Ray Serve + our engine), adapter pulls and tuning.
#   CUDA (default):  podman build -f deploy/runtime.Dockerfile -t ghcr.io/kaito-ray/runtime:0.1.0 .
#   CPU:             podman build -f deploy/runtime.Dockerfile --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu ...
#   (an empty TORCH_INDEX uses pip's configured sources, which is how the tests take a local CPU wheel)
# Entry points (the hooks set the command):
#   python -m serving.cluster head --config /mnt/config/serve_config.yaml   (Ray head + Serve, HTTP 8000)
#   python -m serving.cluster worker --address <ws>:6379                     (extra GPU nodes)
#   kaito pull <image> /mnt/adapter/<name>                                   (adapter init containers)
#   python -m tuning ...                                                     (tuning Job)
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_VERSION=2.13.0
# CUDA wheels bundle their CUDA runtime (nvidia-* packages); the node only needs the driver.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PATH=/opt/venv/bin:$PATH \
    HOME=/home/kaito KAITO_CACHE_DIR=/home/kaito/.cache/kaito HF_HOME=/home/kaito/.cache/huggingface \
    RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled

# A bare Debian base has no Python; the python:* images have one. Either way the app lives in a venv.
RUN if ! python3 -c 'import ensurepip' 2>/dev/null; then \
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates && rm -rf /var/lib/apt/lists/*; fi \
 && python3 -m venv /opt/venv \
 && useradd --uid 1000 --create-home --home-dir /home/kaito --shell /usr/sbin/nologin kaito

RUN pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "torch==${TORCH_VERSION}"

WORKDIR /app
COPY setup.cfg setup.py pyproject.toml constraints.txt ./
# Dependencies in their own layer, rebuilt only when setup.cfg or constraints.txt change
# (README.md is the long description: an empty one will do here).
# The torch installed above satisfies the torch==2.13.0 pin (a local version label is ignored).
RUN touch README.md && pip install -c constraints.txt ".[serving,tuning]" && pip uninstall -y kaito-ray
COPY README.md ./
COPY presets ./presets
COPY hooks ./hooks
COPY metacontroller ./metacontroller
COPY serving ./serving
COPY tuning ./tuning
COPY artifacts ./artifacts
COPY kaito_cli ./kaito_cli
COPY contract ./contract
COPY tinymodel ./tinymodel
RUN pip install --no-deps -c constraints.txt ".[serving,tuning]"

USER 1000:1000
# The root filesystem is read-only in the pods (hooks/core/children/pod.py scratch_env mounts /tmp and
# sets these too); the same defaults here keep a bare `podman run --read-only` of the image working.
ENV HOME=/tmp KAITO_CACHE_DIR=/tmp/kaito-cache HF_HOME=/tmp/huggingface
# 8000: Serve HTTP (the Service's port 80). 6379: Ray head (on the Service only when count > 1).
EXPOSE 8000 6379
CMD ["python", "-m", "serving.cluster", "head", "--config", "/mnt/config/serve_config.yaml"]
