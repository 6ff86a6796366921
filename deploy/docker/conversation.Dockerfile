# tsmhub conversation: conversations between SP TSMs and secure elements
# Built by `make images` from the static binary in bin/images/conversation (the build
# context); nothing is pulled: the image starts FROM scratch. The health probe
# is deploy/healthcheck: it GETs /readyz on the port of HTTP_ADDR.
FROM scratch
# The probe first: the same file in every image, so the layer is shared.
COPY healthcheck /bin/healthcheck
# /data belongs to the service user; a named volume mounted there takes over
# that ownership when it is created.
COPY --chown=10001:10001 data/ /data/
COPY conversation /bin/conversation
ENV DATA_DIR=/data HTTP_ADDR=:8081
EXPOSE 8081
VOLUME ["/data"]
USER 10001:10001
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 CMD ["/bin/healthcheck"]
ENTRYPOINT ["/bin/conversation"]
LABEL org.opencontainers.image.vendor="tsmhub" org.opencontainers.image.title="tsmhub-conversation" org.opencontainers.image.description="conversations between SP TSMs and secure elements"
