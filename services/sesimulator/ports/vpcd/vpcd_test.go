package vpcd_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"

	"github.com/tsmhub/tsmhub/services/sesimulator/adapters"
	"github.com/tsmhub/tsmhub/services/sesimulator/app"
	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
	"github.com/tsmhub/tsmhub/services/sesimulator/internal/cardtest"
	"github.com/tsmhub/tsmhub/services/sesimulator/ports/vpcd"
)

// deadline bounds every wait: generous, for a loaded 2-core machine.
const deadline = 30 * time.Second

const seID = "0100000000000002"

// fleet is the real card fleet in a bbolt file of the test.
type fleet struct {
	store *bus.Store
	fs    *adapters.FleetStore
	app   *app.App
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	store, err := bus.OpenStore(bus.StoreConfig{Path: filepath.Join(t.TempDir(), "sesimulator.db"), Buckets: adapters.Buckets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	sealer, err := adapters.NewStateSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{store: store, fs: adapters.NewFleetStore(store, sealer)}
	f.app = f.newApp()
	return f
}

// newApp returns use cases over the same bbolt file with an empty cache, as
// after a restart.
func (f *fleet) newApp() *app.App {
	return app.New(f.fs, app.Config{
		Factory:    domain.Factory{IssuerMasterKey: domain.DemoIssuerMasterKey, SPMasterKeys: domain.DemoSPMasterKeys()},
		CacheCards: 16,
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
}

func (f *fleet) enrol(t *testing.T) {
	t.Helper()
	if _, err := f.app.Enrol(context.Background(), app.EnrolCommand{EventID: bus.NewID(), Record: cardtest.Record(seID, "uicc")}); err != nil {
		t.Fatal(err)
	}
}

// countingCards counts the client's card look-ups and can make the next
// transmit fail as a failed commit would.
type countingCards struct {
	vpcd.Cards
	lookups  atomic.Int64
	failNext atomic.Bool
}

var errCommit = errors.New("injected commit failure")

func (c *countingCards) HasCard(ctx context.Context, se string) (bool, error) {
	c.lookups.Add(1)
	return c.Cards.HasCard(ctx, se)
}

func (c *countingCards) TransmitFromReader(ctx context.Context, se string, capdu []byte) ([]byte, error) {
	if c.failNext.CompareAndSwap(true, false) {
		return nil, errCommit
	}
	return c.Cards.TransmitFromReader(ctx, se, capdu)
}

// startClient runs a client until the test ends and checks it stops.
func startClient(t *testing.T, cards vpcd.Cards, addr string) *vpcd.Client {
	t.Helper()
	c := vpcd.New(cards, vpcd.Config{Addr: addr, SEID: seID, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(deadline):
			t.Error("client did not stop")
		}
	})
	return c
}

// fakeVPCD is the reader side of the protocol, as vpcd speaks it: a TCP
// listener that accepts the card and sends it control messages and APDUs.
type fakeVPCD struct {
	t  *testing.T
	ln *net.TCPListener
}

func listenVPCD(t *testing.T, addr string) *fakeVPCD {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return &fakeVPCD{t: t, ln: ln.(*net.TCPListener)}
}

func (f *fakeVPCD) addr() string { return f.ln.Addr().String() }

// accept waits for the card to connect.
func (f *fakeVPCD) accept() *vconn {
	f.t.Helper()
	_ = f.ln.SetDeadline(time.Now().Add(deadline))
	c, err := f.ln.Accept()
	if err != nil {
		f.t.Fatalf("card did not connect: %v", err)
	}
	f.t.Cleanup(func() { _ = c.Close() })
	return &vconn{t: f.t, c: c}
}

// noConnectionPending reports whether no card connection waits to be accepted.
func (f *fakeVPCD) noConnectionPending() bool {
	_ = f.ln.SetDeadline(time.Now().Add(time.Millisecond))
	c, err := f.ln.Accept()
	if err == nil {
		_ = c.Close()
		return false
	}
	return true
}

type vconn struct {
	t *testing.T
	c net.Conn
}

func (v *vconn) send(payload []byte) {
	v.t.Helper()
	buf := binary.BigEndian.AppendUint16(nil, uint16(len(payload)))
	if _, err := v.c.Write(append(buf, payload...)); err != nil {
		v.t.Fatal(err)
	}
}

// recv reads one message; io.EOF when the card closed the connection.
func (v *vconn) recv() ([]byte, error) {
	_ = v.c.SetReadDeadline(time.Now().Add(deadline))
	var hdr [2]byte
	if _, err := io.ReadFull(v.c, hdr[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	_, err := io.ReadFull(v.c, msg)
	return msg, err
}

func (v *vconn) mustRecv() []byte {
	v.t.Helper()
	m, err := v.recv()
	if err != nil {
		v.t.Fatalf("no answer from the card: %v", err)
	}
	return m
}

// atr asks for the ATR. Because vpcd's messages are answered in order, an
// ATR coming back also proves that the messages before it got no answer.
func (v *vconn) atr() []byte {
	v.t.Helper()
	v.send([]byte{vpcd.CtrlGetATR})
	return v.mustRecv()
}

func (v *vconn) transmit(capdu []byte) []byte {
	v.t.Helper()
	v.send(capdu)
	return v.mustRecv()
}

func sw(r []byte) uint16 { return domain.StatusWord(r) }

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	bustest.Eventually(t, deadline, what, cond)
}

func TestServesTheCardAndCommitsEveryAPDU(t *testing.T) {
	f := newFleet(t)
	f.enrol(t)
	v := listenVPCD(t, "127.0.0.1:0")
	client := startClient(t, f.app, v.addr())
	conn := v.accept()

	conn.send([]byte{vpcd.CtrlPowerOn})
	if got := conn.atr(); !bytes.Equal(got, vpcd.DefaultATR) {
		t.Fatalf("ATR %X, want %X", got, vpcd.DefaultATR)
	}
	eventually(t, "connected state", client.Connected)
	// SELECT by empty AID (case 2) and by the ISD's AID with Le, as
	// opensc-tool and pcscd send them.
	for _, c := range []string{"00A4040000", "00a4040008a00000015100000000"} {
		r := conn.transmit(cardtest.Unhex(t, c))
		if len(r) < 4 || r[0] != 0x6F || sw(r) != 0x9000 || !bytes.Contains(r, card.ISDAID) {
			t.Fatalf("SELECT %s answered %X, want the ISD FCI (6F ... 9000)", c, r)
		}
	}
	// An extended-length APDU (GET DATA with a data field the card does not
	// need) arrives whole and gets an answer.
	big := append([]byte{0x80, 0xCA, 0x00, 0x66, 0x00, 0x04, 0x00}, make([]byte, 1024)...)
	if r := conn.transmit(big); sw(r) != 0x9000 || r[0] != 0x66 {
		t.Fatalf("extended APDU answered %X", r)
	}
	// A card without its state in memory (a restart) shows every APDU.
	counters, err := f.newApp().Counters(context.Background(), seID)
	if err != nil || counters.APDUsExecuted != 3 {
		t.Fatalf("committed APDUs %+v, %v; want 3", counters, err)
	}
	view, _ := f.newApp().Card(context.Background(), seID)
	if view.ExecutionCount != 3 {
		t.Errorf("committed card executed %d APDUs, want 3", view.ExecutionCount)
	}
}

// openISD opens an SCP03 session (level 33) with the ISD through send and
// returns the host.
func openISD(t *testing.T, send func([]byte) []byte) *scp03.Host {
	t.Helper()
	host := cardtest.ISDHost(t, seID)
	iu, err := host.InitializeUpdate(card.KVNIssuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := host.ProcessInitializeUpdateResponse(send(iu)); err != nil {
		t.Fatalf("INITIALIZE UPDATE: %v", err)
	}
	ea, err := host.ExternalAuthenticate(0x33)
	if err != nil {
		t.Fatal(err)
	}
	if r := send(ea); sw(r) != 0x9000 {
		t.Fatalf("EXTERNAL AUTHENTICATE: %X", r)
	}
	return host
}

// securedGetStatus sends a wrapped GET STATUS and returns the SW and the
// R-MAC check.
func securedGetStatus(t *testing.T, host *scp03.Host, send func([]byte) []byte) (uint16, error) {
	t.Helper()
	w, err := host.Wrap(cardtest.GetStatusPlain)
	if err != nil {
		t.Fatal(err)
	}
	data, status, err := host.Unwrap(send(w))
	if err == nil && status == 0x9000 && (len(data) == 0 || data[0] != 0xE3) {
		t.Fatalf("GET STATUS data %X, want E3 entries", data)
	}
	return status, err
}

// direct sends APDUs to the use cases without a reader.
func direct(t *testing.T, a *app.App) func([]byte) []byte {
	return func(c []byte) []byte {
		r, err := a.TransmitFromReader(context.Background(), seID, c)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}

func TestSecureChannelThroughTheReaderIsCommitted(t *testing.T) {
	f := newFleet(t)
	f.enrol(t)
	v := listenVPCD(t, "127.0.0.1:0")
	startClient(t, f.app, v.addr())
	conn := v.accept()
	conn.send([]byte{vpcd.CtrlPowerOn})
	host := openISD(t, conn.transmit)
	if status, err := securedGetStatus(t, host, conn.transmit); status != 0x9000 || err != nil {
		t.Fatalf("secured GET STATUS through vpcd: SW %04X, R-MAC %v", status, err)
	}
	// The open session is in bbolt: use cases that never saw the card in
	// memory (a restarted service) continue it.
	if status, err := securedGetStatus(t, host, direct(t, f.newApp())); status != 0x9000 || err != nil {
		t.Fatalf("secured GET STATUS on the committed state: SW %04X, R-MAC %v", status, err)
	}
}

func TestResetFromTheReaderEndsTheSecureChannel(t *testing.T) {
	for _, ctrl := range []byte{vpcd.CtrlReset, vpcd.CtrlPowerOff, vpcd.CtrlPowerOn} {
		f := newFleet(t)
		f.enrol(t)
		v := listenVPCD(t, "127.0.0.1:0")
		startClient(t, f.app, v.addr())
		conn := v.accept()
		host := openISD(t, conn.transmit)
		if status, err := securedGetStatus(t, host, conn.transmit); status != 0x9000 || err != nil {
			t.Fatalf("secured GET STATUS: SW %04X, R-MAC %v", status, err)
		}
		conn.send([]byte{ctrl})
		conn.atr() // answered after the reset: the reset is done
		// Committed: a restarted service finds the session gone too.
		if status, _ := securedGetStatus(t, host, direct(t, f.newApp())); status == 0x9000 {
			t.Fatalf("control %02X: secured command accepted by the committed card", ctrl)
		}
		if status, _ := securedGetStatus(t, host, conn.transmit); status == 0x9000 {
			t.Fatalf("control %02X: secured command accepted after the reset", ctrl)
		}
	}
}

func TestResetEndsTheOTASessionOfAConversation(t *testing.T) {
	f := newFleet(t)
	f.enrol(t)
	run := func(conversationID string, commands ...string) error {
		return f.app.Execute(context.Background(), app.ExecuteCommand{EventID: bus.NewID(), StoredAt: time.Now(), SEID: seID,
			ConversationID: conversationID, ScriptID: bus.NewID(), Commands: commands})
	}
	if err := run("conv-1", cardtest.SelectISD); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.app.Card(context.Background(), seID); v.SessionConversationID != "conv-1" {
		t.Fatalf("session %q, want conv-1", v.SessionConversationID)
	}
	v := listenVPCD(t, "127.0.0.1:0")
	startClient(t, f.app, v.addr())
	conn := v.accept()
	conn.send([]byte{vpcd.CtrlPowerOff})
	conn.atr()
	view, err := f.newApp().Card(context.Background(), seID)
	if err != nil || view.SessionConversationID != "" {
		t.Fatalf("after a power-off from the reader the OTA session is %q (%v); want none, so the next script resets the card",
			view.SessionConversationID, err)
	}
}

func TestReconnectsWithBackoffUntilVPCDIsThere(t *testing.T) {
	f := newFleet(t)
	f.enrol(t)
	// A port nobody listens on (yet).
	probe := listenVPCD(t, "127.0.0.1:0")
	addr := probe.addr()
	_ = probe.ln.Close()

	cards := &countingCards{Cards: f.app}
	client := startClient(t, cards, addr)
	eventually(t, "several attempts to reach vpcd", func() bool { return cards.lookups.Load() >= 3 })
	if client.Connected() || client.Sessions() != 0 {
		t.Fatal("connected while vpcd is not there")
	}

	v := listenVPCD(t, addr)
	conn := v.accept()
	if !bytes.Equal(conn.atr(), vpcd.DefaultATR) {
		t.Fatal("wrong ATR")
	}
	// vpcd goes away (pcscd stopped): the card comes back by itself.
	_ = conn.c.Close()
	conn = v.accept()
	if r := conn.transmit(cardtest.Unhex(t, cardtest.SelectISD)); sw(r) != 0x9000 {
		t.Fatalf("SELECT after reconnection: %X", r)
	}
	if n := client.Sessions(); n != 2 {
		t.Errorf("%d sessions, want 2", n)
	}
}

func TestConnectsOnlyOnceTheCardExists(t *testing.T) {
	f := newFleet(t)
	v := listenVPCD(t, "127.0.0.1:0")
	cards := &countingCards{Cards: f.app}
	startClient(t, cards, v.addr())
	eventually(t, "look-ups of the missing card", func() bool { return cards.lookups.Load() >= 3 })
	if !v.noConnectionPending() {
		t.Fatal("the client put an SE without a card into the reader")
	}
	f.enrol(t)
	conn := v.accept()
	if r := conn.transmit(cardtest.Unhex(t, cardtest.SelectISD)); sw(r) != 0x9000 {
		t.Fatalf("SELECT: %X", r)
	}
}

func TestProtocolOddities(t *testing.T) {
	f := newFleet(t)
	f.enrol(t)
	cards := &countingCards{Cards: f.app}
	v := listenVPCD(t, "127.0.0.1:0")
	client := startClient(t, cards, v.addr())

	// A control byte vpcd does not define gets no answer and breaks nothing.
	conn := v.accept()
	conn.send([]byte{0x03})
	if !bytes.Equal(conn.atr(), vpcd.DefaultATR) {
		t.Fatal("unknown control byte answered")
	}

	// An empty message never comes from vpcd: the card leaves the reader
	// and comes back.
	conn.send(nil)
	if m, err := conn.recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after an empty message: %X, %v; want the connection closed", m, err)
	}
	conn = v.accept()

	// A failed commit: no answer, the connection drops, the card comes back
	// with the state before the failed APDU.
	before, _ := f.app.Counters(context.Background(), seID)
	cards.failNext.Store(true)
	conn.send(cardtest.Unhex(t, cardtest.SelectISD))
	if m, err := conn.recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after a failed commit: %X, %v; want the connection closed without an answer", m, err)
	}
	conn = v.accept()
	if r := conn.transmit(cardtest.Unhex(t, cardtest.SelectISD)); sw(r) != 0x9000 {
		t.Fatalf("SELECT after the failure: %X", r)
	}
	after, _ := f.app.Counters(context.Background(), seID)
	if after.APDUsExecuted != before.APDUsExecuted+1 {
		t.Errorf("APDUs %d -> %d, want one more (the failed one left no trace)", before.APDUsExecuted, after.APDUsExecuted)
	}
	if n := client.Sessions(); n != 3 {
		t.Errorf("%d sessions, want 3", n)
	}
}

func TestStopsWhenTheContextEnds(t *testing.T) {
	f := newFleet(t)
	f.enrol(t)
	v := listenVPCD(t, "127.0.0.1:0")
	c := vpcd.New(f.app, vpcd.Config{Addr: v.addr(), SEID: seID, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	conn := v.accept()
	conn.atr()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("Run did not return after the context ended")
	}
	if _, err := conn.recv(); !errors.Is(err, io.EOF) {
		t.Errorf("connection still open after stop: %v", err)
	}
	if c.Connected() {
		t.Error("still reports connected")
	}
}

// TestConcurrentScriptsAndReaderAPDUs runs bus scripts and reader APDUs on
// the same card at once: each goes through the SE lock and commits, so the
// committed counters add up exactly (run with -race).
func TestConcurrentScriptsAndReaderAPDUs(t *testing.T) {
	f := newFleet(t)
	f.enrol(t)
	v := listenVPCD(t, "127.0.0.1:0")
	startClient(t, f.app, v.addr())
	conn := v.accept()
	const n = 20
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			if err := f.app.Execute(context.Background(), app.ExecuteCommand{EventID: bus.NewID(), StoredAt: time.Now(),
				SEID: seID, ConversationID: "conv", ScriptID: bus.NewID(), Commands: []string{cardtest.SelectISD}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < n; i++ {
		if r := conn.transmit(cardtest.Unhex(t, cardtest.SelectISD)); sw(r) != 0x9000 {
			t.Fatalf("SELECT %d: %X", i, r)
		}
	}
	wg.Wait()
	c, err := f.newApp().Counters(context.Background(), seID)
	if err != nil || c.APDUsExecuted != 2*n || c.ScriptsExecuted != n {
		t.Fatalf("counters %+v, %v; want %d APDUs and %d scripts", c, err, 2*n, n)
	}
}
