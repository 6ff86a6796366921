// Command mnoadapter runs tsmhub's adapter for one MNO (MNO_ID): it models the
// MNO's OTA bearer (latency, rate limit, validity) and hands scripts to the
// SE. Run one process per MNO. Configuration: environment variables, see
// service.Config.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tsmhub/tsmhub/services/mnoadapter/service"
)

func main() {
	cfg, err := service.ConfigFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mnoadapter: configuration:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := service.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "mnoadapter:", err)
		os.Exit(1)
	}
}
