# The control-plane image: Flask hooks under gunicorn. Base install only (no torch, no Ray).
#   docker build -f deploy/hooks.Dockerfile -t ghcr.io/kaito-ray/hooks:0.1.0 .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY setup.cfg setup.py pyproject.toml constraints.txt README.md ./
COPY presets ./presets
COPY hooks ./hooks
COPY metacontroller ./metacontroller
COPY serving ./serving
COPY tuning ./tuning
COPY artifacts ./artifacts
COPY kaito_cli ./kaito_cli
RUN pip install -c constraints.txt . && useradd --uid 1000 --no-create-home --shell /usr/sbin/nologin kaito
USER 1000:1000
EXPOSE 8080
# /tmp must be writable (the manifests mount an emptyDir there: the root filesystem is read-only).
CMD ["gunicorn", "-c", "python:hooks.gunicorn_conf", "-w", "2", "-b", "0.0.0.0:8080", "hooks.app:app"]
