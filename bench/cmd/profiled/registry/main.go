// Command registry is the registry service exactly as services/registry/main.go runs it,
// plus Go's profiles on PPROF_ADDR (bench/internal/pprofserve). tsmbench runs
// these builds so that it can take CPU profiles at maximum rate.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tsmhub/tsmhub/bench/internal/pprofserve"
	"github.com/tsmhub/tsmhub/services/registry/service"
)

func main() {
	pprofserve.Start("registry")
	cfg, err := service.ConfigFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "registry: configuration:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := service.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
}
