# The control-plane image: Flask hooks under gunicorn. Base install only (no torch, no Ray).
#   podman build -f deploy/hooks.Dockerfile -t ghcr.io/kaito-ray/hooks:0.1.0 .
#   (docker build takes the same arguments; --build-arg BASE_IMAGE=... picks another base)
# Runs as uid 1000 on a read-only root filesystem; only /tmp is writable (an emptyDir in deploy/).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PATH=/opt/venv/bin:$PATH
# A bare Debian base has no Python; the python:* images have one. Either way the app lives in a venv.
RUN if ! python3 -c 'import ensurepip' 2>/dev/null; then \
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates && rm -rf /var/lib/apt/lists/*; fi \
 && python3 -m venv /opt/venv \
 && useradd --uid 1000 --no-create-home --shell /usr/sbin/nologin kaito
WORKDIR /app
COPY setup.cfg setup.py pyproject.toml constraints.txt ./
# Dependencies in their own layer, rebuilt only when setup.cfg or constraints.txt change
# (README.md is the long description: an empty one will do here).
RUN touch README.md && pip install -c constraints.txt . && pip uninstall -y kaito-ray
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
RUN pip install --no-deps -c constraints.txt .
USER 1000:1000
EXPOSE 8080
CMD ["gunicorn", "-c", "python:hooks.shell.gunicorn_conf", "-w", "2", "-b", "0.0.0.0:8080", "hooks.shell.app:app"]
