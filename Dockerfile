# One image for every ntplatform process: `ntplatform producer`, `ntplatform replay-exchange`, ...,
# and Dagster (entrypoint `dagster-webserver` / `dagster-daemon`, code from workspace.yaml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ntplatform ntplatform
COPY producer producer
COPY assets assets
COPY sensors sensors
COPY definitions.py workspace.yaml ./
COPY dagster_home/dagster.yaml dagster_home/dagster.yaml
RUN pip install --no-cache-dir . && useradd --create-home ntplatform && chown -R ntplatform dagster_home
USER ntplatform
ENV DAGSTER_HOME=/app/dagster_home
ENTRYPOINT ["ntplatform"]
