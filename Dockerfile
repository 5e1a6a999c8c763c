# raftkv member image: python slim, non-root, data dir on a volume, healthcheck on /health.
#   docker build -t raftkv .
#   docker run -v raftkv-data:/var/lib/raftkv -p 2379:2379 raftkv   (a one-member cluster "m1")
# The three-member cluster: docker compose up -d (docker-compose.yml, configs/).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY raftkv ./raftkv
COPY cluster ./cluster
RUN pip install --no-cache-dir --root-user-action=ignore --prefix=/install .

FROM python:3.11-slim
RUN groupadd --system --gid 2379 raftkv \
 && useradd --system --uid 2379 --gid raftkv --home-dir /var/lib/raftkv --shell /usr/sbin/nologin raftkv \
 && mkdir -p /var/lib/raftkv /etc/raftkv \
 && chown raftkv:raftkv /var/lib/raftkv
COPY --from=build /install /usr/local
# a default config (m1 alone would not find its peers: compose mounts each member's own file)
COPY configs/m1.yaml /etc/raftkv/config.yaml
ENV PYTHONUNBUFFERED=1
USER raftkv
WORKDIR /var/lib/raftkv
VOLUME ["/var/lib/raftkv"]
EXPOSE 2379 2380
HEALTHCHECK --interval=5s --timeout=3s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import json,sys,urllib.request as u; r=u.urlopen('http://127.0.0.1:2379/health', timeout=2); sys.exit(json.load(r).get('health') != 'true')"]
CMD ["python", "-m", "raftkv", "--config-file", "/etc/raftkv/config.yaml"]
