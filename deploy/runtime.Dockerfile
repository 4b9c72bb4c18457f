# The runtime image: model serving (Ray Serve + our engine) and tuning, with a CUDA build of torch.
#   docker build -f deploy/runtime.Dockerfile -t ghcr.io/kaito-ray/runtime:0.1.0 .
# Entry points (contract §2; the hooks set the command):
#   python -m serving.cluster head --config /mnt/config/serve_config.yaml   (Ray head + Serve, HTTP 8000)
#   python -m serving.cluster worker --address <ws>:6379                     (extra GPU nodes)
#   kaito pull <image> /mnt/adapter/<name>                                   (adapter init containers)
#   python -m tuning ...                                                     (tuning Job)
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
# CUDA wheels bundle their CUDA runtime (nvidia-* packages); the node only needs the driver.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HOME=/home/kaito KAITO_CACHE_DIR=/home/kaito/.cache/kaito HF_HOME=/home/kaito/.cache/huggingface \
    RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled

RUN pip install --index-url "$TORCH_INDEX" "torch==${TORCH_VERSION}"

WORKDIR /app
COPY setup.cfg setup.py pyproject.toml constraints.txt README.md ./
COPY presets ./presets
COPY hooks ./hooks
COPY metacontroller ./metacontroller
COPY serving ./serving
COPY tuning ./tuning
COPY artifacts ./artifacts
COPY kaito_cli ./kaito_cli
# the CUDA torch installed above satisfies the torch==2.13.0 pin (a local version label is ignored)
RUN pip install -c constraints.txt ".[serving,tuning]" \
 && useradd --uid 1000 --create-home --home-dir /home/kaito --shell /usr/sbin/nologin kaito

USER 1000:1000
# 8000: Serve HTTP (the Service's port 80). 6379: Ray head (on the Service only when count > 1).
EXPOSE 8000 6379
CMD ["python", "-m", "serving.cluster", "head", "--config", "/mnt/config/serve_config.yaml"]
