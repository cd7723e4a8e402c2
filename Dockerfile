# loadkit. By default the Flagger webhook service on :8080; or any command, e.g.
#   docker run --rm loadkit run --target http://bruno-site-canary.bruno:80 --profile smoke
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

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
ENTRYPOINT ["loadkit"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--db", "/home/loadkit/loadkit.db"]
