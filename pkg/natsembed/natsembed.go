// Package natsembed starts an in-process nats-server with JetStream for the
// embedded default run (`make run`) and for tests.
package natsembed

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config of an embedded server.
type Config struct {
	// Host and Port to listen on; Port -1 picks a free port (tests).
	Host string
	Port int
	// StoreDir is the JetStream store; it must be set (an empty one would make
	// the server fall back to a shared temporary directory).
	StoreDir string
	// SyncAlways fsyncs every write (sync_interval: always) at a throughput cost.
	SyncAlways bool
	// Debug enables the server's own log on stderr.
	Debug bool
	// ServerName distinguishes servers in logs.
	ServerName string
	// HTTPPort serves the server's monitoring endpoints (0 = off).
	HTTPPort int
}

// Start runs a server and waits until it accepts connections.
func Start(cfg Config) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsembed: StoreDir is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      !cfg.Debug,
		HTTPPort:   cfg.HTTPPort,
		// 8 MiB: large enough for a maximal script event, small enough to bound memory.
		MaxPayload: 8 << 20,
	}
	if cfg.HTTPPort != 0 {
		opts.HTTPHost = cfg.Host
	}
	if cfg.SyncAlways {
		opts.SyncAlways = true
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	if cfg.Debug {
		ns.ConfigureLogger()
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("natsembed: server not ready within 30s")
	}
	return ns, nil
}
