# One image for every ntplatform process: `ntplatform producer`, `ntplatform replay-exchange`, ...
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ntplatform ntplatform
COPY producer producer
RUN pip install --no-cache-dir . && useradd --create-home ntplatform
USER ntplatform
ENTRYPOINT ["ntplatform"]
