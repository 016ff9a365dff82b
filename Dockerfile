# attnviz: the service with the bundled models.
#
#   docker build -t attnviz .                                   # CPU PyTorch (default)
#   docker build -t attnviz:cuda --build-arg TORCH_INDEX=cu128 .  # a CUDA build of PyTorch
#   docker run -p 8000:8000 attnviz                             # http://localhost:8000
#   docker run --gpus all -p 8000:8000 attnviz:cuda             # device auto = CUDA
#
# Settings are ATTNVIZ_* environment variables (docker run -e ATTNVIZ_DEVICE=cpu ...).

ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

# cpu, or the CUDA tag of a PyTorch wheel index (https://download.pytorch.org/whl/<tag>)
ARG TORCH_INDEX=cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so that a change to the code reuses these layers.
# PyTorch alone, from the PyTorch index of the chosen variant (the CPU wheel by default).
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_INDEX}" \
        "torch==${TORCH_VERSION}"

# The other runtime dependencies, read from pyproject.toml (torch already satisfied).
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if not d.startswith('torch')))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# A user without privileges runs the service; the files stay root-owned (read-only).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin attnviz

# The code, the pages and the bundled models: .dockerignore is an allowlist (attnviz/,
# static/, templates/, checkpoints/ without training state or logs). The code runs from
# /app, where it finds checkpoints/, static/ and templates/.
COPY . ./

ENV PYTHONPATH=/app \
    ATTNVIZ_HOST=0.0.0.0 \
    ATTNVIZ_PORT=8000 \
    ATTNVIZ_MODELS_DIR=/app/checkpoints \
    ATTNVIZ_DEVICE=auto

USER attnviz
EXPOSE 8000

# 200 when at least one model serves (503 when none loaded).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health' % os.environ.get('ATTNVIZ_PORT', '8000'), timeout=4)"]

CMD ["python", "-m", "attnviz.app.server"]
