# MQNODE application image: the `mqnode` command with sql/ and alembic/ beside the package.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /srv/mqnode
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY alembic ./alembic
COPY sql ./sql
# Editable install: app/ stays next to sql/ and alembic/, which it reads at run time.
RUN pip install --no-cache-dir -e .
USER nobody
ENTRYPOINT ["mqnode"]
CMD ["--help"]
