// Package pprofserve serves Go's CPU and heap profiles (net/http/pprof) on
// the address in PPROF_ADDR, for the profiled builds of the services that
// tsmbench runs. The services themselves serve only /metrics; this is what a
// PPROF_ADDR variable in servicekit would add (proposed in BENCHMARKS.md).
package pprofserve

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"
)

// EnvAddr names the variable with the listen address (e.g. 127.0.0.1:6060);
// unset or empty serves nothing.
const EnvAddr = "PPROF_ADDR"

// Start listens on PPROF_ADDR, if set, and serves /debug/pprof/ there in the
// background. A bad address is reported on stderr and the service runs on
// without profiles: profiling must never stop the service.
func Start(service string) {
	addr := os.Getenv(EnvAddr)
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s=%s: %v (running without profiles)\n", service, EnvAddr, addr, err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
}
