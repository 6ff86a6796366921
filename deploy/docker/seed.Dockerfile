# seed: the one-shot job that enrols the demo data set through the registry's
# admin API and waits for the demo cards (deploy/seed):
#   docker compose run --rm seed
# Built by `make images` from the static binary in bin/images/seed; FROM
# scratch, nothing is pulled.
FROM scratch
COPY seed /bin/seed
USER 10001:10001
ENTRYPOINT ["/bin/seed"]
LABEL org.opencontainers.image.vendor="tsmhub" org.opencontainers.image.title="tsmhub-seed" org.opencontainers.image.description="enrols the tsmhub demo data set"
