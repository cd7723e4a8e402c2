# loadkit. By default the Flagger webhook service on :8080; or any command, e.g.
#   docker run --rm loadkit run --target http://bruno-site-canary.bruno:80 --profile smoke
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

# tini runs as PID 1 and loadkit as its child. The kernel gives PID 1 no default signal actions, so
# a PID 1 without a handler for SIGTERM ignores the kubelet's SIGTERM and lives on until the
# grace period's SIGKILL: a `sh -c` wrapper left a chaos run's fault in place that way. tini
# forwards SIGTERM to loadkit (which then plays the rollbacks and cleans up), exits with loadkit's
# exit code (the verdict a Job reports), and reaps zombies: processes orphaned inside the container
# are re-parented to PID 1, and loadkit is no init. Locust runs in its own session, which loadkit
# stops itself, so tini signals loadkit alone (no -g).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY loadkit ./loadkit
COPY locustfiles ./locustfiles
RUN pip install . && rm -rf /src
COPY experiments /experiments

RUN useradd --create-home --uid 10001 loadkit
USER 10001
WORKDIR /home/loadkit

EXPOSE 8080
# Manifests give only `args:` (a loadkit command line), never `command:`, which would replace this
# entrypoint and put their command, not tini, at PID 1.
ENTRYPOINT ["/usr/bin/tini", "--", "loadkit"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--db", "/home/loadkit/loadkit.db"]
