# MQNODE application image: the `mqnode` command with sql/ and alembic/ beside the package.
# `mqnode run` (every lane + the API), `mqnode db upgrade`, `mqnode collector binance`, ... (docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /srv/mqnode
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY alembic ./alembic
COPY sql ./sql
# Editable install: app/ stays next to sql/ and alembic/, which it reads at run time (app.settings.PROJECT_DIR).
RUN pip install --no-cache-dir -e .
# MQNODE_BTC_BLOCK_SOURCE=rest decodes raw blocks with app/btc/raw_decode.c over libwally-core: built here with
# cffi (gcc only for this step), so the running container, as nobody, only loads it.
ENV MQNODE_BUILD_DIR=/srv/mqnode/.build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && python -m app.btc.rawblock \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
# In a container the API must listen on every interface; compose sets the same values.
ENV MQNODE_API_HOST=0.0.0.0 MQNODE_API_PORT=8000
EXPOSE 8000
USER nobody
ENTRYPOINT ["mqnode"]
CMD ["--help"]
