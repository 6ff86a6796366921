// Command scriptrouter runs tsmhub's script router: it validates the scripts
// SPs send in their conversations, routes them to the MNO adapter of the SE's
// MNO and turns the SE's response APDUs into the send-script response.
// Configuration: environment variables, see service.Config.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tsmhub/tsmhub/services/scriptrouter/service"
)

func main() {
	cfg, err := service.ConfigFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scriptrouter: configuration:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := service.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "scriptrouter:", err)
		os.Exit(1)
	}
}
