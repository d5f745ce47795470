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
# In a container the API must listen on every interface; compose sets the same values.
ENV MQNODE_API_HOST=0.0.0.0 MQNODE_API_PORT=8000
EXPOSE 8000
USER nobody
ENTRYPOINT ["mqnode"]
CMD ["--help"]
