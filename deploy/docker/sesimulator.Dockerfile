# tsmhub sesimulator: simulated GlobalPlatform cards
# Built by `make images` from the static binary in bin/images/sesimulator (the build
# context); nothing is pulled: the image starts FROM scratch. The health probe
# is deploy/healthcheck: it GETs /readyz on the port of HTTP_ADDR.
FROM scratch
# The probe first: the same file in every image, so the layer is shared.
COPY healthcheck /bin/healthcheck
# /data belongs to the service user; a named volume mounted there takes over
# that ownership when it is created.
COPY --chown=10001:10001 data/ /data/
COPY sesimulator /bin/sesimulator
ENV DATA_DIR=/data HTTP_ADDR=:8084
EXPOSE 8084
VOLUME ["/data"]
USER 10001:10001
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 CMD ["/bin/healthcheck"]
ENTRYPOINT ["/bin/sesimulator"]
LABEL org.opencontainers.image.vendor="tsmhub" org.opencontainers.image.title="tsmhub-sesimulator" org.opencontainers.image.description="simulated GlobalPlatform cards"
