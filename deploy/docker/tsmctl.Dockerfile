# tsmctl: the command-line client (SP look-ups and conversations, `tail` of
# every stream, replay) for operators who would rather not build it:
#   docker compose run --rm tsmctl tail
# Built by `make images` from the static binary in bin/images/tsmctl; FROM
# scratch, nothing is pulled. No /data and no health check: it is a tool.
FROM scratch
COPY tsmctl /bin/tsmctl
USER 10001:10001
ENTRYPOINT ["/bin/tsmctl"]
LABEL org.opencontainers.image.vendor="tsmhub" org.opencontainers.image.title="tsmhub-tsmctl" org.opencontainers.image.description="tsmhub command-line client"
