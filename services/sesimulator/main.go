// Command sesimulator runs the se-simulator service: a persisted fleet of
// simulated GlobalPlatform cards that execute the APDUs of tsmhub scripts.
// Configuration is by environment variables (see service.Config).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tsmhub/tsmhub/services/sesimulator/service"
)

func main() {
	cfg, err := service.ConfigFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sesimulator: configuration:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := service.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "sesimulator:", err)
		os.Exit(1)
	}
}
