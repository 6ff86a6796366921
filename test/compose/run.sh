#!/usr/bin/env bash
# Compose end-to-end test (issue 5): builds the images (make images), then runs
# the Go test in this directory (build tag compose), which deploys
# compose.yaml as project tsmhub-e2e, seeds it, runs the Fig. 3 walkthrough
# from the host with a killed service and a stopped NATS node, checks
# exactly-once execution, and tears it down; then the one-node override; then
# the scale-out run (`up -d --scale conversation=2 --scale scriptrouter=2`,
# 200 conversations on 50 SEs, a replica killed: TestComposeScaleOut).
# .ci/run calls it when `docker info` works. Everything it publishes is bound
# to 127.0.0.1 (ports 14222-14224, 18080, 18083-18085, 18222; conversation and
# scriptrouter on ephemeral ports).
#
# Environment: TSMHUB_COMPOSE (compose command; default `docker compose`, else
# docker-compose), TSMHUB_KEEP=1 (leave the stack up), SKIP_IMAGES=1 (use the
# images already built), COMPOSE_TEST_TIMEOUT (default 20m).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${TSMHUB_COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then
    TSMHUB_COMPOSE="docker compose"
  elif command -v docker-compose >/dev/null 2>&1; then
    TSMHUB_COMPOSE="docker-compose"
  else
    echo "compose test: neither 'docker compose' nor docker-compose found" >&2
    exit 1
  fi
fi
export TSMHUB_COMPOSE
echo "== compose test with: $TSMHUB_COMPOSE ($($TSMHUB_COMPOSE version 2>/dev/null | head -n1))"

start=$(date +%s)
# The deploy module (health probe, seed job) is outside `make test`'s list.
echo "== go vet + go test ./deploy/..."
(cd deploy && go vet ./... && go test -count=1 ./...)
if [ "${SKIP_IMAGES:-}" != 1 ]; then
  echo "== make images"
  make images
fi
images_done=$(date +%s)

# Whatever happens to the Go test, leave no project behind.
cleanup() {
  if [ "${TSMHUB_KEEP:-}" = 1 ]; then return; fi
  $TSMHUB_COMPOSE -p tsmhub-e2e --project-directory . -f compose.yaml \
    down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
  $TSMHUB_COMPOSE -p tsmhub-e2e-small --project-directory . -f compose.yaml -f compose.small.yaml \
    down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== go test -tags compose ./compose/"
status=0
(cd test && timeout --kill-after=30s "${COMPOSE_TEST_TIMEOUT:-20m}" \
  go test -tags compose -count=1 -timeout "${COMPOSE_TEST_TIMEOUT:-20m}" -v ./compose/) || status=$?
end=$(date +%s)
echo "== compose test: images $((images_done - start))s, test $((end - images_done))s, total $((end - start))s, exit $status"
exit $status
