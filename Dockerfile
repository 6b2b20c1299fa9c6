# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

RUN useradd --system --home /app --shell /usr/sbin/nologin fetchweb

COPY pyproject.toml README.md ./
COPY fetchweb fetchweb
COPY accounts accounts
COPY retrieval retrieval
RUN pip install .

COPY manage.py ./
COPY templates templates
COPY static static
# Throw-away keys for this one build step, so that no generated var/secrets.json
# (keys anyone with the image could read) is baked into the image.
RUN DEBUG=true SECRET_KEY=build-only FIELD_ENCRYPTION_KEYS=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p var/prometheus && test ! -e var/secrets.json && chown -R fetchweb /app/var

USER fetchweb
EXPOSE 8000
CMD ["gunicorn", "fetchweb.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
