// Command tsmhub-dev is the embedded default run (`make run`): an in-process
// NATS JetStream server on 127.0.0.1:4222 with its store under ./data/nats,
// the five services as child processes (one mno-adapter per demo MNO), and the
// demo data set enrolled through the registry. Ctrl-C stops everything; data
// stays in ./data for the next run (`make clean-data` removes it).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tsmhub/tsmhub/pkg/devstack"
)

func main() {
	dataDir := flag.String("data", "data", "directory for the JetStream store and every service's bbolt file")
	binDir := flag.String("bin", "bin", "directory holding the service binaries (make build)")
	natsPort := flag.Int("nats-port", 4222, "client port of the embedded NATS server")
	natsHTTP := flag.Int("nats-monitor-port", 8222, "monitoring port of the embedded NATS server (0 = off)")
	seed := flag.Bool("seed", true, "enrol the demo data set")
	flag.Parse()
	if err := devstack.CheckBinaries(*binDir); err != nil {
		log.Fatal(err)
	}
	st, err := devstack.Start(devstack.Config{Dir: *dataDir, BinDir: *binDir, NATSPort: *natsPort, NATSHTTPPort: *natsHTTP})
	if err != nil {
		log.Fatal(err)
	}
	specs, err := devstack.Specs(devstack.DefaultPorts)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, s := range specs {
		if err := st.Run(s); err != nil {
			st.Stop()
			log.Fatal(err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	for _, s := range specs {
		if err := st.WaitReady(rctx, s.Name); err != nil {
			cancel()
			st.Stop()
			log.Fatal(err)
		}
	}
	cancel()
	if *seed {
		if err := devstack.SeedDemo(ctx, st.HTTPAddr("registry")); err != nil {
			st.Stop()
			log.Fatalf("seed demo data: %v", err)
		}
	}
	fmt.Fprintf(os.Stderr, "\ntsmhub is up: NATS %s, registry http://%s (demo data enrolled: %v). Ctrl-C stops.\n\n",
		st.NATSURL(), st.HTTPAddr("registry"), *seed)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "stopping...")
	st.Stop()
}
