# loadkit: `docker run --rm loadkit run --target http://bruno-site-canary.bruno:80 --profile smoke`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY loadkit ./loadkit
COPY locustfiles ./locustfiles
RUN pip install . && rm -rf /src

RUN useradd --create-home --uid 10001 loadkit
USER 10001
WORKDIR /home/loadkit

ENTRYPOINT ["loadkit"]
CMD ["--help"]
