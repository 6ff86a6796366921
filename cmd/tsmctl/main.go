// Command tsmctl is the command-line client of tsmhub for SP integrators and
// operators. It speaks public contract v1 over NATS JetStream as an SP TSM
// does (pkg/spclient) and reads the streams for ops.
//
//	tsmctl [global flags] <command> [flags]
//
//	se-id      resolve an MSI to the SE id
//	se-data    show what tsmhub knows of an SE
//	converse   begin a conversation, run script files, end it (end-to-end SCP03)
//	call       send any operation with a JSON body and print the response
//	tail       live, one-line-per-event view of every stream
//	replay     re-publish a stored message with a new event id (ops)
//	pre-personalize  create the SP's SD (temporary keys) and a service instance on an SE
//	service    activate, suspend, resume, terminate a service instance, or show its state
//	admin      registry admin API: SE lost/stolen/found, subscription change, audit, SE record
//
// Global flags (also accepted after the command): --nats (default $NATS_URL or
// nats://127.0.0.1:4222), --sp (default $TSM_SP), --timeout (default 30s),
// --json (print raw JSON responses).
//
// Script files of `tsmctl converse` hold one command per line: a raw C-APDU in
// hex, or one of the directives select, initialize-update, external-authenticate,
// secure, get-status, store-data and put-key; see `tsmctl help converse` and
// script.go for the format.
//
// Exit status: 0 success, 1 a request failed or a response did not verify,
// 2 wrong usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/spclient"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// globals are the flags every command accepts.
type globals struct {
	natsURL string
	spID    string
	timeout time.Duration
	json    bool
	// spSet is true when --sp was given on the command line (tail filters
	// by SP only then, not by $TSM_SP).
	spSet bool
}

func defaultGlobals() *globals {
	g := &globals{natsURL: os.Getenv("NATS_URL"), spID: os.Getenv("TSM_SP"), timeout: 30 * time.Second}
	if g.natsURL == "" {
		g.natsURL = nats.DefaultURL
	}
	return g
}

// register adds the global flags to fs, keeping values already parsed.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.natsURL, "nats", g.natsURL, "NATS server URL ($NATS_URL)")
	fs.StringVar(&g.spID, "sp", g.spID, "SP id ($TSM_SP)")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "how long to wait for each response")
	fs.BoolVar(&g.json, "json", g.json, "print raw JSON responses")
}

// noteSP records whether --sp was on the command line of fs.
func (g *globals) noteSP(fs *flag.FlagSet) {
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "sp" {
			g.spSet = true
		}
	})
}

// command is a subcommand.
type command struct {
	name    string
	summary string
	usage   string
	// help is the long text after the flags.
	help string
	// flags registers the command's own flags and returns the function that
	// runs it once they are parsed.
	flags func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) int
}

// env is what a command runs with.
type env struct {
	g      *globals
	stdout io.Writer
	stderr io.Writer
}

func (e *env) errorf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "tsmctl: "+format+"\n", args...)
}

var commands = []*command{seIDCommand, seDataCommand, converseCommand, callCommand, tailCommand, replayCommand,
	prePersonalizeCommand, serviceCommand, adminCommand}

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run is main without the process: tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := defaultGlobals()
	e := &env{g: g, stdout: stdout, stderr: stderr}
	top := flag.NewFlagSet("tsmctl", flag.ContinueOnError)
	top.SetOutput(stderr)
	g.register(top)
	top.Usage = func() { usage(stderr) }
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	g.noteSP(top)
	rest := top.Args()
	if len(rest) == 0 {
		usage(stderr)
		return exitUsage
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		if len(rest) == 0 {
			usage(stdout)
			return exitOK
		}
		c := findCommand(rest[0])
		if c == nil {
			e.errorf("unknown command %q", rest[0])
			return exitUsage
		}
		fs, _ := c.flagSet(e)
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK
	}
	c := findCommand(name)
	if c == nil {
		e.errorf("unknown command %q (see tsmctl help)", name)
		return exitUsage
	}
	fs, runCmd := c.flagSet(e)
	// Flags may follow positional arguments (tsmctl call <op> --data ...).
	var positional []string
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK
			}
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	g.noteSP(fs)
	return runCmd(ctx, e, positional)
}

// flagSet builds the command's flag set with the global flags and its usage.
func (c *command) flagSet(e *env) (*flag.FlagSet, func(ctx context.Context, e *env, args []string) int) {
	fs := flag.NewFlagSet("tsmctl "+c.name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	runCmd := c.flags(fs)
	e.g.register(fs)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: tsmctl %s %s\n\n%s\n\nflags:\n", c.name, c.usage, c.summary)
		fs.PrintDefaults()
		if c.help != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
		}
	}
	return fs, runCmd
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: tsmctl [--nats URL] [--sp SP] [--timeout 30s] [--json] <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for _, c := range commands {
		names = append(names, c.name)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-15s %s\n", n, findCommand(n).summary)
	}
	fmt.Fprintf(w, "\nRun `tsmctl help <command>` for its flags. Exit status: 0 success, 1 failure, 2 usage.\n")
}

// connect dials NATS: it fails fast when the server cannot be reached, then
// reconnects on its own (tail runs for long).
func (e *env) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(e.g.natsURL, nats.Name("tsmctl"), nats.Timeout(5*time.Second),
		nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach NATS at %s (set --nats or NATS_URL): %w", e.g.natsURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// client connects and starts an SP client for --sp.
func (e *env) client() (*spclient.Client, func(), error) {
	if e.g.spID == "" {
		return nil, nil, errors.New("no SP id: set --sp or TSM_SP")
	}
	nc, js, err := e.connect()
	if err != nil {
		return nil, nil, err
	}
	c, err := spclient.New(js, e.g.spID, spclient.WithTimeout(e.g.timeout))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return c, func() { c.Close(); nc.Close() }, nil
}
