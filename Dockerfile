# syntax=docker/dockerfile:1
# The hub's one image: web (gunicorn + uvicorn workers, ASGI), Celery worker and beat.
#   docker build -t integration-hub .
# Base image pinned by tag and by the digest of its multi-architecture index, so a
# rebuild gets the same Python and Debian until someone moves both on purpose.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# --- build: the virtualenv and the collected static files -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
# uv installs the pinned requirements about ten times faster than pip (same versions).
RUN python -m venv /opt/venv && pip install uv==0.13.8
COPY requirements.txt /app/requirements.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python -r /app/requirements.txt
COPY . /app
WORKDIR /app
# Throwaway values only for this step (settings refuse to load without them);
# nothing here ends up in the image's environment.
RUN SECRET_KEY=collectstatic-only \
    FIELD_ENCRYPTION_KEYS=q8yF3v2bJm0nN4r6rU1oYbq2j8c8V2mZr1aXlN0l0Ws= \
    DJANGO_ENV_FILE= \
    /opt/venv/bin/python manage.py collectstatic --noinput --verbosity 0

# --- runtime: no build tools, not root ---------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_ENV_FILE= \
    HOST=0.0.0.0 \
    PORT=8000
RUN groupadd --system --gid 10001 hub \
    && useradd --system --uid 10001 --gid hub --home-dir /app --no-create-home --shell /usr/sbin/nologin hub
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
# The code stays root-owned and read-only to the app; only var/ (local media
# when S3 is not configured) is writable.
RUN mkdir -p /app/var && chown hub:hub /app/var
USER hub
EXPOSE 8000
# docker-compose.yml and deploy/k8s run worker and beat from this image with their own command.
CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "config.asgi:application"]
