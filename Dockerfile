# Gatehouse scanner image: the CLI, the embedded clamd and the project's rules.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends clamav-daemon chromium fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/gatehouse gatehouse

WORKDIR /app
COPY pyproject.toml README.md ./
COPY scanner scanner
COPY sandbox sandbox
COPY review_ui review_ui
COPY workers workers
COPY rules rules
RUN pip install --no-cache-dir .

# The rules live beside the code, not in site-packages; state goes to the data volume.
ENV GATEHOUSE_RULES_DIR=/app/rules \
    GATEHOUSE_DATA_DIR=/var/lib/gatehouse \
    GATEHOUSE_WORK_ROOT=/var/tmp/gatehouse
# Non-root: Chromium then runs with its own sandbox on (as root it cannot).
USER gatehouse
ENTRYPOINT ["gatehouse"]
CMD ["--help"]
