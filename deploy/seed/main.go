// Command seed enrols tsmhub's demo data set (two MNOs, two SPs, two catalog
// services, one SE of each configuration: pkg/devstack.SeedDemo) into a
// running stack through the registry's admin API, then waits until the
// se-simulator has manufactured every demo card, so that the demo is usable
// the moment it exits. It is the one-shot `seed` job of compose.yaml:
//
//	docker compose run --rm seed
//
// Seeding is idempotent (the admin API takes PUTs): running it twice is
// harmless. Configuration (flags override the environment):
//
//	-registry  REGISTRY_ADDR   host:port of the registry admin API [registry:8080]
//	-sesim     SESIM_ADDR      host:port of the se-simulator HTTP API; "none":
//	                           do not wait for the cards [sesimulator:8084]
//	-timeout   SEED_TIMEOUT    give up after this long [120s]
//
// Exit status 0 when every record was enrolled and every card exists, 1
// otherwise. The demo data set holds only public demo keys.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tsmhub/tsmhub/pkg/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what run works with.
type config struct {
	registryAddr string
	sesimAddr    string
	timeout      time.Duration
}

// run is main without the process: tests call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg := config{registryAddr: "registry:8080", sesimAddr: "sesimulator:8084", timeout: 120 * time.Second}
	if v := getenv("REGISTRY_ADDR"); v != "" {
		cfg.registryAddr = v
	}
	if v := getenv("SESIM_ADDR"); v != "" {
		cfg.sesimAddr = v
	}
	if v := getenv("SEED_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fmt.Fprintf(stderr, "seed: SEED_TIMEOUT=%q: want a duration such as 90s\n", v)
			return 2
		}
		cfg.timeout = d
	}
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.registryAddr, "registry", cfg.registryAddr, "host:port of the registry admin API ($REGISTRY_ADDR)")
	fs.StringVar(&cfg.sesimAddr, "sesim", cfg.sesimAddr, "host:port of the se-simulator HTTP API, none to skip the card check ($SESIM_ADDR)")
	fs.DurationVar(&cfg.timeout, "timeout", cfg.timeout, "give up after this long ($SEED_TIMEOUT)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	start := time.Now()
	if err := seed(ctx, cfg); err != nil {
		fmt.Fprintln(stderr, "seed:", err)
		return 1
	}
	fmt.Fprintf(stdout, "seed: demo data set enrolled (%d SEs, %d SPs, 2 MNOs) in %s\n",
		len(devstack.DemoSEs), len(devstack.DemoSPs), time.Since(start).Round(time.Millisecond))
	return 0
}

// seed waits for the registry, enrols the data set (retrying while the
// registry is still starting) and waits for the cards.
func seed(ctx context.Context, cfg config) error {
	if err := waitOK(ctx, "http://"+cfg.registryAddr+"/readyz", "registry ready"); err != nil {
		return err
	}
	var last error
	for {
		if last = devstack.SeedDemo(ctx, cfg.registryAddr); last == nil {
			break
		}
		if err := pause(ctx); err != nil {
			return fmt.Errorf("enrol the demo data set: %w", last)
		}
	}
	if cfg.sesimAddr == "" || cfg.sesimAddr == "none" {
		return nil
	}
	for _, se := range devstack.DemoSEs {
		if err := waitOK(ctx, "http://"+cfg.sesimAddr+"/v1/cards/"+se.SEID+"/counters", "card "+se.SEID+" manufactured"); err != nil {
			return err
		}
	}
	return nil
}

// waitOK polls url until it answers 200 or ctx ends.
func waitOK(ctx context.Context, url, what string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		last = err
		if pause(ctx) != nil {
			return fmt.Errorf("waiting for %s (%s): %w", what, url, last)
		}
	}
}

// pause waits a moment between polls, or returns ctx's error.
func pause(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(250 * time.Millisecond):
		return nil
	}
}
