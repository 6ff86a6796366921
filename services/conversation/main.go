// Command conversation runs tsmhub's conversation service: it opens and ends
// conversations between SP TSMs and secure elements (one open conversation per
// SE, with limits and expiry) and passes their scripts to the script router.
// Configuration: environment variables, see service.Config.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tsmhub/tsmhub/services/conversation/service"
)

func main() {
	cfg, err := service.ConfigFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "conversation: configuration:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := service.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "conversation:", err)
		os.Exit(1)
	}
}
