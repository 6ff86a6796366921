// Command conversation is the conversation service exactly as services/conversation/main.go runs it,
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
	"github.com/tsmhub/tsmhub/services/conversation/service"
)

func main() {
	pprofserve.Start("conversation")
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
