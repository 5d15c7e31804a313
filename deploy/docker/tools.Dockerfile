# Image of the operator commands (registry_tools without its `local` extra): `registry-schema`,
# which the schema Job runs before each rollout, and the Cloudflare migrations. No service runs
# from it. Build from the repository root:
#   docker build -f deploy/docker/tools.Dockerfile -t registry-tools .
# (or `make images`). Everything installed comes from uv.lock; the final stage holds the
# virtual environment and the interpreter only, no compiler, no uv, no sources.
ARG PYTHON_IMAGE=python:3.11-slim-trixie
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
# Bytecode compiled now, because the root filesystem is read-only at run time.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Third-party dependencies first: this layer is rebuilt only when uv.lock or a pyproject changes.
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/
COPY libs/tools/pyproject.toml libs/tools/
COPY services/distribution/pyproject.toml services/distribution/
COPY services/management/pyproject.toml services/management/
COPY services/jobs/pyproject.toml services/jobs/
RUN uv sync --frozen --no-dev --package registry-tools --no-install-workspace
COPY libs/common libs/common
COPY libs/tools libs/tools
RUN uv sync --frozen --no-dev --package registry-tools --no-editable

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 registry \
    && useradd --system --uid 10001 --gid registry --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin registry
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
CMD ["registry-schema"]
