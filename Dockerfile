# The Sessionflow image: worker (default command) and CLI.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SESSIONFLOW_LOG_FORMAT=json \
    SESSIONFLOW_DATA_DIR=/var/lib/sessionflow

# bubblewrap confines sandboxed commands (the local sandbox refuses to run without it);
# slirp4netns gives them egress when SESSIONFLOW_SANDBOX_NETWORK=egress; e2fsprogs makes
# each workspace's fixed-size disk (mkfs.ext4), which the worker loop-mounts as root.
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap slirp4netns e2fsprogs \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY sessionflow ./sessionflow
COPY agents ./agents
COPY providers ./providers
COPY sandbox ./sandbox
COPY streams ./streams
COPY storage ./storage
COPY workflows ./workflows
COPY activities ./activities
COPY worker ./worker
COPY client ./client
COPY gateway ./gateway
COPY cli ./cli
RUN pip install '.[s3]' && useradd --create-home sessionflow \
    && mkdir -p /var/lib/sessionflow/payloads && chown -R sessionflow /var/lib/sessionflow
USER sessionflow

CMD ["sessionflow", "worker"]
