// Command healthcheck is the container health probe of every tsmhub image.
// The images are FROM scratch, with no shell, curl or wget, so Docker's
// HEALTHCHECK needs a program of its own: this one GETs one URL and exits 0
// when the answer is 2xx, 1 otherwise (the reason goes to stderr, which
// `docker inspect` shows in the health log).
//
//	healthcheck [-timeout 2s] [URL]
//
// Without a URL it probes the service in its own container:
// http://127.0.0.1:<port>/readyz, with the port taken from HTTP_ADDR, the
// same variable the service listens on (the container's environment is the
// probe's environment). HEALTHCHECK_URL, when set, is probed instead.
//
// It uses the standard library only, so it stays small and static.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// run is main without the process: tests call it.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	url := fs.Arg(0)
	if url == "" {
		var err error
		if url, err = defaultURL(getenv); err != nil {
			fmt.Fprintln(stderr, "healthcheck:", err)
			return 2
		}
	}
	if err := probe(url, *timeout); err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	return 0
}

// defaultURL is HEALTHCHECK_URL, else the /readyz of the port in HTTP_ADDR on
// the loopback interface (a service bound to 0.0.0.0 or :port answers there).
func defaultURL(getenv func(string) string) (string, error) {
	if u := getenv("HEALTHCHECK_URL"); u != "" {
		return u, nil
	}
	addr := getenv("HTTP_ADDR")
	if addr == "" {
		return "", errors.New("no URL: give one, or set HTTP_ADDR (host:port the service listens on) or HEALTHCHECK_URL")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", fmt.Errorf("HTTP_ADDR=%q: want host:port or :port", addr)
	}
	return "http://" + net.JoinHostPort("127.0.0.1", port) + "/readyz", nil
}

// probe GETs url and wants a 2xx status.
func probe(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: %s %s", url, resp.Status, body)
	}
	return nil
}
