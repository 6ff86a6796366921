// Package bustest holds test helpers for code that runs on the bus; it is
// imported by _test.go files only.
//
// StartJetStream runs an embedded nats-server with a temporary JetStream store
// and the tsmhub streams; StartService runs a service's Run in the background
// of a test. Publish puts a CloudEvent on a subject; NextMessage, Collect,
// CountMessages and Record read what the streams hold. Eventually polls a
// condition up to a deadline; Buffer collects the log of code under test.
package bustest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/natsembed"
)

// Timeout bounds what the helpers wait for on their own (a publish ack, a
// consumer, a service to start or stop): generous, for a loaded 2-core machine.
const Timeout = 30 * time.Second

// Server is an embedded nats-server with JetStream, and a connection to it.
type Server struct {
	// NC and JS are the test's connection; Restart replaces them.
	NC *nats.Conn
	JS jetstream.JetStream

	ns   *server.Server
	dir  string
	port int
	url  string
}

// StartJetStream starts a server on a free port with its store in a
// temporary directory, creates the tsmhub streams and connects. The
// connection and the server are closed when the test ends.
func StartJetStream(t testing.TB) *Server {
	t.Helper()
	s := &Server{dir: t.TempDir(), port: -1}
	t.Cleanup(s.shutdown)
	s.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := bus.EnsureStreams(ctx, s.JS, 1); err != nil {
		t.Fatal(err)
	}
	return s
}

// URL is the server's client URL; it stays the same across Restart.
func (s *Server) URL() string { return s.url }

// Restart closes the connection, shuts the server down and starts it again on
// the same store and port, with a new connection in NC and JS. Consumers and
// clients made on the old connection are dead: make new ones.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.shutdown()
	s.start(t)
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	ns, err := natsembed.Start(natsembed.Config{Port: s.port, StoreDir: s.dir})
	if err != nil {
		t.Fatal(err)
	}
	s.ns, s.url = ns, ns.ClientURL()
	if addr, ok := ns.Addr().(*net.TCPAddr); ok {
		s.port = addr.Port
	}
	if s.NC, err = nats.Connect(ns.ClientURL()); err != nil {
		t.Fatal(err)
	}
	if s.JS, err = jetstream.New(s.NC); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) shutdown() {
	if s.NC != nil {
		s.NC.Close()
		s.NC, s.JS = nil, nil
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.ns = nil
	}
}
