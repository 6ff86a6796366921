// Package compose is the compose end-to-end test: it deploys tsmhub with
// compose.yaml (three NATS JetStream nodes, the five services, every image
// FROM scratch as built by `make images`), seeds the demo data set with the
// seed job, runs the Fig. 3 walkthrough from the host against the NATS ports
// published on 127.0.0.1 (with tsmctl and with the spclient SP library),
// kills one service container with SIGKILL and stops one NATS node during it,
// restarts both, checks that the SP got every response and that the cards
// executed every APDU exactly once, and tears everything down, checking that
// nothing of the project is left. TestComposeScaleOut deploys with
// `--scale conversation=2 --scale scriptrouter=2` and runs the scale workload
// of pkg/devstack (200 conversations on 50 SEs, a conversation replica killed
// with SIGKILL): every response delivered once, per-SE order kept.
//
// It needs a Docker engine and runs only with the build tag:
//
//	test/compose/run.sh            # make images, then this test
//	cd test && go test -tags compose -count=1 -v ./compose/
//
// Environment: TSMHUB_COMPOSE (the compose command, default `docker compose`
// when that works, else `docker-compose`), TSMHUB_TAG (image tag, default
// latest), TSMCTL (tsmctl binary, default bin/images/.bin/tsmctl), the
// TSMHUB_*_PORT variables of compose.yaml (defaults 14222... here, so a
// stack on the default ports is not disturbed), TSMHUB_KEEP=1 (leave the
// stack up after the test, for debugging).
package compose
