# Two images from one file:
#   docker build --target api .     FastAPI service and migrations; no torch (small, starts fast)
#   docker build --target worker .  Celery workers with the PyTorch engine
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --create-home --uid 1000 flipguard
COPY pyproject.toml alembic.ini ./
COPY contracts ./contracts
COPY db ./db

FROM base AS api
COPY api ./api
RUN pip install ".[service]"
USER flipguard
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --retries=5 \
    CMD ["python", "-m", "api.healthcheck"]
CMD ["uvicorn", "--factory", "api.main:create_app", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS worker
COPY mpt ./mpt
COPY worker ./worker
RUN pip install ".[service,engine]"
USER flipguard
CMD ["celery", "-A", "worker.app", "worker", "--pool=solo", "-Q", "training", "--concurrency=1"]
