# Gatehouse: the CLI, the service (API, workers) and the embedded clamd, from the lock file.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends clamav-daemon chromium fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/gatehouse gatehouse \
 && useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin gatehouse-sandbox

WORKDIR /src
# Dependencies first, exactly as locked (hashes checked), so code changes reuse this layer.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
# Then the project itself as a wheel: rules, the advisory snapshot and instrument.js are
# package data, so the installed package scans without the source tree.
COPY pyproject.toml README.md LICENSE ./
COPY scanner scanner
COPY sandbox sandbox
COPY service service
COPY review_ui review_ui
COPY workers workers
COPY rules rules
RUN pip install --no-cache-dir --no-deps . && rm -rf /src

WORKDIR /var/lib/gatehouse
# State goes to the data volume; work dirs stay private to the container.
ENV GATEHOUSE_DATA_DIR=/var/lib/gatehouse \
    GATEHOUSE_WORK_ROOT=/var/tmp/gatehouse
# Non-root: Chromium then runs with its own sandbox on (as root it cannot).
USER gatehouse
ENTRYPOINT ["gatehouse"]
CMD ["--help"]
