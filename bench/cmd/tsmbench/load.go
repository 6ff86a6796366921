package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tsmhub/tsmhub/bench/internal/stats"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/devstack"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/spclient"
)

// Operations whose latency is recorded.
const (
	opBegin   = "begin-conversation"
	opSetup   = "send-script (setup: SELECT + INITIALIZE UPDATE)"
	opSecured = "send-script (5 SCP03-secured APDUs)"
	opEnd     = "end-conversation"
	opConv    = "whole conversation"
	// opAnyScript is every send-script, setup and secured.
	opAnyScript = "send-script (all)"
)

// recordedOps in report order.
var recordedOps = []string{opBegin, opSetup, opSecured, opEnd, opAnyScript, opConv}

// The SP's plain commands secured in the measured script (after EXTERNAL
// AUTHENTICATE): GET STATUS of the SD's applications and a STORE DATA to the
// SD, twice each; the card answers 9000 to each at security level 33.
var securedPlain = [][]byte{
	mustHex("80F24002024F0000"),
	mustHex("80E2900006DF0103010203"),
	mustHex("80F24002024F0000"),
	mustHex("80E2900006DF0103010203"),
}

// Security level of the measured script: C-MAC, C-DECRYPTION, R-MAC,
// R-ENCRYPTION (the strongest, the most work for the card and the host).
const securityLevel = 0x33

// setupAPDUs and securedAPDUs per conversation.
const (
	setupAPDUs   = 2
	securedAPDUs = 5
)

var demoMasterKey = mustHex(devstack.DemoSPMasterKey)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func upperHex(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

// meter counts and times operations while it is on.
type meter struct {
	on            atomic.Bool
	lat           map[string]*stats.Recorder
	conversations atomic.Int64
	scripts       atomic.Int64
	secured       atomic.Int64
	apdus         atomic.Int64
	mu            sync.Mutex
	errors        map[string]int64
	// trace, if set, samples measured secured scripts for the hop
	// breakdown.
	trace *tracer
	// perSecond counts measured send-scripts by second since since (a
	// falling rate within a window shows degradation, not just a level).
	since     time.Time
	perSecond [3600]atomic.Int64
}

// start turns the meter on and starts the per-second timeline.
func (m *meter) start() {
	m.since = time.Now()
	m.on.Store(true)
}

// timeline returns the send-scripts completed in each whole second of the
// window.
func (m *meter) timeline(window time.Duration) []int64 {
	n := min(int(window/time.Second), len(m.perSecond))
	out := make([]int64, n)
	for i := range out {
		out[i] = m.perSecond[i].Load()
	}
	return out
}

func newMeter() *meter {
	m := &meter{lat: map[string]*stats.Recorder{}, errors: map[string]int64{}}
	for _, op := range recordedOps {
		m.lat[op] = &stats.Recorder{}
	}
	return m
}

// observe records one successful operation when measured.
func (m *meter) observe(op string, d time.Duration, measured bool) {
	if !measured {
		return
	}
	m.lat[op].Add(d)
	if op == opSetup || op == opSecured {
		m.lat[opAnyScript].Add(d)
		m.scripts.Add(1)
		if !m.since.IsZero() {
			if sec := int(time.Since(m.since) / time.Second); sec < len(m.perSecond) {
				m.perSecond[sec].Add(1)
			}
		}
		if op == opSetup {
			m.apdus.Add(setupAPDUs)
		} else {
			m.secured.Add(1)
			m.apdus.Add(securedAPDUs)
		}
	}
}

// fail counts an error by operation and kind (error code, timeout, ...)
// whether or not the meter is on: errors are never hidden by the warm-up.
func (m *meter) fail(op string, err error) {
	kind := "error"
	var fe *spclient.FailedError
	switch {
	case errors.As(err, &fe):
		kind = string(fe.Code())
		if kind == "" {
			kind = string(fe.Result.Status)
		}
	case errors.Is(err, spclient.ErrTimeout):
		kind = "timeout"
	case errors.Is(err, context.Canceled):
		return
	default:
		kind = truncate(err.Error(), 120)
	}
	m.mu.Lock()
	m.errors[op+": "+kind]++
	m.mu.Unlock()
}

func (m *meter) errorCounts() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int64{}
	for k, v := range m.errors {
		out[k] = v
	}
	return out
}

func (m *meter) latencies() map[string]stats.Summary {
	out := map[string]stats.Summary{}
	for op, r := range m.lat {
		out[op] = r.Summary()
	}
	return out
}

// callTimeout bounds each call of a conversation.
const callTimeout = 60 * time.Second

// conversation runs one conversation on se, as an SP TSM runs it:
// begin; [SELECT SD, INITIALIZE UPDATE]; [EXTERNAL AUTHENTICATE, 4 commands
// wrapped at level 33]; end. Every response is checked (9000, card
// cryptogram, R-MACs), so a run that is fast because it fails shows up as
// errors, not as speed. measured is asked at each operation's end whether it
// counts (closed loop: the meter is on; open loop: the conversation was
// scheduled inside the window, so slow ones finishing late still count).
func conversation(ctx context.Context, se *benchSE, m *meter, measured func() bool) error {
	c := se.SP.Client
	convStart := time.Now()
	call := func(op string, f func(ctx context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		start := time.Now()
		err := f(cctx)
		if err != nil {
			m.fail(op, err)
			return err
		}
		end := time.Now()
		ok := measured()
		m.observe(op, end.Sub(start), ok)
		if ok && op == opSecured && m.trace != nil {
			m.trace.add(scriptTrace{seID: se.ID, sent: start, recv: end})
		}
		return nil
	}
	var convID string
	err := call(opBegin, func(ctx context.Context) error {
		r, err := c.BeginConversation(ctx, beginRequest(se))
		if err == nil {
			convID = r.ConversationID
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := conversationScripts(ctx, c, se, convID, call); err != nil {
		// Free the SE for the next conversation (untimed).
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
		defer cancel()
		_, _ = c.EndConversation(ectx, contract.EndConversationRequest{ConversationID: convID, Outcome: contract.OutcomeFailure})
		return err
	}
	err = call(opEnd, func(ctx context.Context) error {
		_, err := c.EndConversation(ctx, endRequest(convID))
		return err
	})
	if err != nil {
		return err
	}
	if measured() {
		m.lat[opConv].Add(time.Since(convStart))
		m.conversations.Add(1)
	}
	return nil
}

func beginRequest(se *benchSE) contract.BeginConversationRequest {
	return contract.BeginConversationRequest{SEID: se.ID, TargetAID: upperHex(se.SP.SDAID),
		RequestedOperation: contract.OperationOther}
}

func endRequest(convID string) contract.EndConversationRequest {
	return contract.EndConversationRequest{ConversationID: convID, Outcome: contract.OutcomeSuccess}
}

// conversationScripts runs the two scripts of a conversation through call,
// which times each one (or, when counting steps, waits for a quiet bus).
func conversationScripts(ctx context.Context, c *spclient.Client, se *benchSE, convID string,
	call func(string, func(context.Context) error) error) error {
	ch, err := spclient.NewSecureChannel(spclient.SecureChannelConfig{MasterKey: demoMasterKey, SDAID: se.SP.SDAID})
	if err != nil {
		return err
	}
	iu, err := ch.InitializeUpdate(0x30)
	if err != nil {
		return err
	}
	selectSD := apdu.Command{CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x00, Data: se.SP.SDAID, Le: 0}.Bytes()
	var setup *contract.SendScriptResponse
	err = call(opSetup, func(ctx context.Context) error {
		r, err := c.SendScript(ctx, contract.SendScriptRequest{ConversationID: convID,
			Commands: []string{upperHex(selectSD), upperHex(iu)}})
		if err != nil {
			return err
		}
		setup = r
		return checkResponses(r, setupAPDUs)
	})
	if err != nil {
		return err
	}
	iuResp, _ := hex.DecodeString(setup.Responses[1])
	if _, err := ch.ProcessInitializeUpdateResponse(iuResp); err != nil {
		return err
	}
	ea, err := ch.ExternalAuthenticate(securityLevel)
	if err != nil {
		return err
	}
	commands := []string{upperHex(ea)}
	wrapped := make([]*spclient.Wrapped, 0, len(securedPlain))
	for _, p := range securedPlain {
		w, err := ch.Wrap(p)
		if err != nil {
			return err
		}
		wrapped = append(wrapped, w)
		commands = append(commands, upperHex(w.Command))
	}
	var secured *contract.SendScriptResponse
	err = call(opSecured, func(ctx context.Context) error {
		r, err := c.SendScript(ctx, contract.SendScriptRequest{ConversationID: convID, Commands: commands})
		if err != nil {
			return err
		}
		secured = r
		return checkResponses(r, securedAPDUs)
	})
	if err != nil {
		return err
	}
	eaResp, _ := hex.DecodeString(secured.Responses[0])
	if err := spclient.CheckExternalAuthenticateResponse(eaResp); err != nil {
		return err
	}
	for i, w := range wrapped {
		r, _ := hex.DecodeString(secured.Responses[i+1])
		u, err := ch.Unwrap(w, r)
		if err != nil {
			return err
		}
		if !u.RMACVerified || u.SW != apdu.SWOK {
			return fmt.Errorf("secured command %d: R-MAC verified %v, SW %04X", i+1, u.RMACVerified, u.SW)
		}
	}
	return nil
}

// checkResponses verifies a script answered n R-APDUs, each 9000.
func checkResponses(r *contract.SendScriptResponse, n int) error {
	if len(r.Responses) != n || len(r.Failed) != 0 {
		return fmt.Errorf("script answered %d responses and %d failures, want %d responses", len(r.Responses), len(r.Failed), n)
	}
	for i, h := range r.Responses {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) < 2 {
			return fmt.Errorf("response %d is not an R-APDU", i)
		}
		if sw := uint16(b[len(b)-2])<<8 | uint16(b[len(b)-1]); sw != apdu.SWOK {
			return fmt.Errorf("command %d answered %04X", i, sw)
		}
	}
	return nil
}

// closedLoop runs clients workers, each running conversations back to back
// on its own SEs (worker w owns ses[w], ses[w+clients], ...), until stop is
// closed; each worker finishes its current conversation first, so no
// conversation is left open.
func closedLoop(ctx context.Context, ses []*benchSE, clients int, m *meter, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		var own []*benchSE
		for i := w; i < len(ses); i += clients {
			own = append(own, ses[i])
		}
		if len(own) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				_ = conversation(ctx, own[i%len(own)], m, m.on.Load)
			}
		}()
	}
	return &wg
}

// openLoop starts conversations at convPerSec on a fixed schedule whatever
// the system's response times (open loop: a slow system does not slow the
// offered load down), each on an idle SE, for warmup + duration. The meter
// records conversations scheduled after the warm-up, wherever they end. lag
// receives how late each measured conversation started against its schedule.
func openLoop(ctx context.Context, ses []*benchSE, convPerSec float64, warmup, duration time.Duration, m *meter, lag *stats.Recorder) {
	idle := make(chan *benchSE, len(ses))
	for _, se := range ses {
		idle <- se
	}
	interval := time.Duration(float64(time.Second) / convPerSec)
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)
	var wg sync.WaitGroup
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if !at.Before(end) || ctx.Err() != nil {
			break
		}
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		var se *benchSE
		select {
		case se = <-idle:
		case <-ctx.Done():
		}
		if se == nil {
			break
		}
		measured := !at.Before(measureFrom)
		if measured {
			lag.Add(time.Since(at))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = conversation(ctx, se, m, func() bool { return measured })
			idle <- se
		}()
	}
	wg.Wait()
}
