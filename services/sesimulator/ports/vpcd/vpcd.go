// Package vpcd serves one simulated card to PC/SC applications through
// vsmartcard's virtual reader, vpcd (the IFD handler that pcscd loads from
// the Debian package vsmartcard-vpcd). The se-simulator plays vpicc, the
// virtual card: a TCP client of vpcd, which listens on 35963 for the reader
// "Virtual PCD 00 00" (35964 for "Virtual PCD 00 01").
//
// Wire format (virtualsmartcard/doc/api.txt, src/vpcd/vpcd.h; gp-card.md
// section 7): every message is a 2-byte big-endian length and a payload, and
// vpcd always speaks first.
//
//	vpcd -> card          meaning                 card -> vpcd
//	00 01 00              power off               nothing
//	00 01 01              power on                nothing
//	00 01 02              reset                   nothing
//	00 01 04              get ATR                 00 LL ATR
//	LL LL C-APDU          APDU (length > 1)       LL LL R-APDU (data || SW1 SW2)
//
// pcscd polls with "get ATR" to see the card; a closed connection is a
// removed card. Power off, power on and reset all reset the card (logical
// channels closed, secure channels ended, the default application
// selected): a power-on after a power-off is a cold reset, and the card
// cannot know what happened to it in between.
//
// Every APDU and every reset goes through the se-simulator's use cases, so
// it takes the same per-SE lock as a script from the bus and is committed to
// the fleet (bbolt) before vpcd gets the answer. If a commit fails the
// client drops the connection, as a card pulled out mid-command: the reader
// never sees a response the card would not remember.
package vpcd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
)

// Control bytes of vpcd (vpcd.h: VPCD_CTRL_OFF 0, ON 1, RESET 2, ATR 4). Some
// third-party clones use 1, 2, 3 for off, on, reset; vpcd itself never does.
const (
	CtrlPowerOff byte = 0x00
	CtrlPowerOn  byte = 0x01
	CtrlReset    byte = 0x02
	CtrlGetATR   byte = 0x04
)

// DefaultATR is the answer-to-reset of the simulated cards:
//
//	3B                             TS, direct convention
//	8A                             T0: TD1 follows, 10 historical bytes
//	01                             TD1: T=1, no further interface bytes
//	74 73 6D 68 75 62 2D 73 69 6D  historical bytes "tsmhub-sim" (proprietary)
//	C4                             TCK (XOR of T0 .. last historical byte)
//
// T=1 only, like the GlobalPlatform cards it stands for, so pcscd and the
// PC/SC clients pick T=1 and APDUs travel verbatim, Le included.
var DefaultATR = []byte{0x3B, 0x8A, 0x01, 0x74, 0x73, 0x6D, 0x68, 0x75, 0x62, 0x2D, 0x73, 0x69, 0x6D, 0xC4}

// Cards are the use cases the client drives: *app.App implements them.
type Cards interface {
	// HasCard reports whether the SE has a card.
	HasCard(ctx context.Context, seID string) (bool, error)
	// ResetFromReader resets the card and commits it.
	ResetFromReader(ctx context.Context, seID string) error
	// TransmitFromReader runs one APDU and returns the response once the
	// card's new state is committed.
	TransmitFromReader(ctx context.Context, seID string, capdu []byte) ([]byte, error)
}

// Config configures a Client.
type Config struct {
	// Addr is vpcd's host:port (the se-simulator's SESIM_VPCD_ADDR, e.g.
	// 127.0.0.1:35963 for the reader "Virtual PCD 00 00").
	Addr string
	// SEID is the SE whose card is served.
	SEID string
	// ATR is answered to "get ATR" (default DefaultATR).
	ATR []byte
	// MinBackoff and MaxBackoff bound the wait between attempts to reach
	// vpcd, or to find the card (defaults 200ms and 5s). The wait doubles
	// after each failure and starts over after a connection that carried
	// messages.
	MinBackoff, MaxBackoff time.Duration
	// WriteTimeout bounds sending one answer to vpcd (default 10s): a vpcd
	// that stops reading costs a reconnection, not a stuck client.
	WriteTimeout time.Duration
	// Log receives connection events with the SE id and counts, never APDU
	// data.
	Log *slog.Logger
}

// Client is the vpicc side of the vpcd protocol for one SE's card.
type Client struct {
	cards     Cards
	cfg       Config
	dialer    net.Dialer
	connected atomic.Bool
	sessions  atomic.Uint64
}

// New returns a client serving cfg.SEID's card from cards.
func New(cards Cards, cfg Config) *Client {
	if len(cfg.ATR) == 0 {
		cfg.ATR = DefaultATR
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Second, cfg.MinBackoff)
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Client{cards: cards, cfg: cfg, dialer: net.Dialer{Timeout: 5 * time.Second}}
}

// Connected reports whether the client is connected to vpcd (the card is in
// the reader).
func (c *Client) Connected() bool { return c.connected.Load() }

// Sessions counts the connections to vpcd so far.
func (c *Client) Sessions() uint64 { return c.sessions.Load() }

// Run serves the card until ctx ends: it waits for the card to exist,
// connects to vpcd, answers its messages, and when vpcd is not there or the
// connection ends tries again with backoff. It returns nil when ctx ends.
func (c *Client) Run(ctx context.Context) error {
	log := c.cfg.Log.With("seId", c.cfg.SEID, "vpcd", c.cfg.Addr)
	backoff := c.cfg.MinBackoff
	wait := func() bool {
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(2*backoff, c.cfg.MaxBackoff)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	// Repeated failures are logged once until the situation changes, so a
	// machine without pcscd does not fill the log.
	lastProblem := ""
	problem := func(level slog.Level, kind string, args ...any) {
		if kind != lastProblem {
			log.Log(ctx, level, kind, args...)
			lastProblem = kind
		}
	}
	for ctx.Err() == nil {
		has, err := c.cards.HasCard(ctx, c.cfg.SEID)
		switch {
		case err != nil:
			problem(slog.LevelError, "vpcd: cannot read the card; retrying", "error", err)
			if !wait() {
				return nil
			}
			continue
		case !has:
			problem(slog.LevelInfo, "vpcd: the SE has no card yet (enrol it at the registry); waiting for it")
			if !wait() {
				return nil
			}
			continue
		}
		conn, err := c.dialer.DialContext(ctx, "tcp", c.cfg.Addr)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			problem(slog.LevelWarn, "vpcd: not reachable (is pcscd with vsmartcard-vpcd running?); retrying", "error", err)
			if !wait() {
				return nil
			}
			continue
		}
		lastProblem = ""
		c.sessions.Add(1)
		c.connected.Store(true)
		log.Info("vpcd: connected, card inserted in the virtual reader")
		st, err := c.serve(ctx, conn)
		c.connected.Store(false)
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil
		}
		log.Info("vpcd: connection ended, card removed from the virtual reader", "reason", err,
			"apdus", st.apdus, "resets", st.resets, "atrRequests", st.atrs)
		if st.messages > 0 {
			backoff = c.cfg.MinBackoff
		}
		if !wait() {
			return nil
		}
	}
	return nil
}

// stats counts what one connection carried (for the log).
type stats struct {
	messages, apdus, resets, atrs int
}

// errProtocol marks a message vpcd never sends.
var errProtocol = errors.New("vpcd protocol violation")

// serve answers vpcd's messages on conn until it closes, ctx ends, or an
// answer cannot be given.
func (c *Client) serve(ctx context.Context, conn net.Conn) (stats, error) {
	var st stats
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			_ = conn.Close() // unblocks the read below
		case <-stop:
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()
	var hdr [2]byte
	for {
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return st, errors.New("closed by vpcd")
			}
			return st, err
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if n == 0 {
			return st, fmt.Errorf("%w: empty message", errProtocol)
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(conn, msg); err != nil {
			return st, fmt.Errorf("read a %d-byte message: %w", n, err)
		}
		st.messages++
		if n == 1 {
			switch msg[0] {
			case CtrlPowerOff, CtrlPowerOn, CtrlReset:
				if err := c.cards.ResetFromReader(ctx, c.cfg.SEID); err != nil {
					return st, fmt.Errorf("reset: %w", err)
				}
				st.resets++
			case CtrlGetATR:
				st.atrs++
				if err := c.send(conn, c.cfg.ATR); err != nil {
					return st, err
				}
			default:
				// Not a vpcd control byte: vpcd expects no answer to a
				// control message, so none is given.
				c.cfg.Log.Warn("vpcd: unknown control byte ignored", "seId", c.cfg.SEID, "control", fmt.Sprintf("%02X", msg[0]))
			}
			continue
		}
		resp, err := c.cards.TransmitFromReader(ctx, c.cfg.SEID, msg)
		if err != nil {
			return st, fmt.Errorf("APDU %d: %w", st.apdus+1, err)
		}
		st.apdus++
		c.cfg.Log.Debug("vpcd: APDU", "seId", c.cfg.SEID, "length", n, "sw", fmt.Sprintf("%04X", domain.StatusWord(resp)))
		if err := c.send(conn, resp); err != nil {
			return st, err
		}
	}
}

// send writes one length-prefixed message.
func (c *Client) send(conn net.Conn, payload []byte) error {
	if len(payload) > 0xFFFF {
		return fmt.Errorf("%w: a %d-byte answer does not fit the 2-byte length", errProtocol, len(payload))
	}
	buf := make([]byte, 2+len(payload))
	binary.BigEndian.PutUint16(buf, uint16(len(payload)))
	copy(buf[2:], payload)
	if err := conn.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout)); err != nil {
		return err
	}
	if _, err := conn.Write(buf); err != nil {
		return fmt.Errorf("write to vpcd: %w", err)
	}
	return nil
}
