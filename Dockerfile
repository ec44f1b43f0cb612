# Multi-stage: build a virtualenv with the wheels, then copy it into a slim runtime image.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home /srv/roster roster \
    && mkdir -p /srv/roster/var && chown roster /srv/roster/var
WORKDIR /srv/roster
COPY --from=build /opt/venv /opt/venv
# The code is the package installed in /opt/venv (for gunicorn and the `roster` command
# alike); /srv/roster holds what it reads at run time: config/ and migrations/, found
# through ROSTER_HOME wherever `roster` is started (app/settings.py).
COPY config ./config
COPY migrations ./migrations
ENV PATH=/opt/venv/bin:$PATH \
    ROSTER_HOME=/srv/roster \
    PYTHONUNBUFFERED=1 \
    ROSTER_APP__ENV=production \
    ROSTER_SERVER__BIND=0.0.0.0:8000
USER roster
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["gunicorn", "--config", "config/gunicorn.conf.py", "--bind", "0.0.0.0:8000", "app:create_app()"]
