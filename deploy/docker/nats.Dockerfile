# nats: nats-server built by `make images` from the
# github.com/nats-io/nats-server/v2 module at the version pinned in the
# Makefile (NATS_SERVER_VERSION), with the two configurations of
# deploy/nats: cluster.conf (three nodes, compose.yaml) and single.conf (one
# node, compose.small.yaml). FROM scratch, nothing is pulled.
FROM scratch
COPY healthcheck /bin/healthcheck
COPY --chown=10001:10001 data/ /data/
COPY nats-server /bin/nats-server
COPY cluster.conf single.conf /etc/nats/
# SERVER_NAME is read by the configuration files; compose sets one per node.
ENV SERVER_NAME=nats-1 HEALTHCHECK_URL=http://127.0.0.1:8222/healthz
# 4222 clients, 6222 cluster routes, 8222 monitoring (/healthz, /varz, /jsz).
EXPOSE 4222 6222 8222
VOLUME ["/data"]
USER 10001:10001
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 CMD ["/bin/healthcheck"]
ENTRYPOINT ["/bin/nats-server"]
CMD ["-c", "/etc/nats/single.conf"]
LABEL org.opencontainers.image.vendor="tsmhub" org.opencontainers.image.title="tsmhub-nats" org.opencontainers.image.description="NATS server with JetStream for tsmhub"
