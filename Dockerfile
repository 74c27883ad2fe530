# The callcost image: worker, gateway and simulator are the same image with other commands.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache
WORKDIR /app
COPY pyproject.toml README.md ./
COPY callcost ./callcost
COPY streams ./streams
COPY agents ./agents
COPY web ./web
COPY demo ./demo
RUN pip install . && useradd --system --home /app callcost && mkdir -p /app/var && chown callcost /app/var
USER callcost
ENTRYPOINT ["callcost"]
CMD ["--help"]
