package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/spclient"
)

// ScaleConfig configures the scale workload (issue 5, "Scaling"): many
// conversations on many SEs at once, for a stack that runs several replicas
// of the conversation service and the script router. The embedded test
// (test/e2e) and the compose test (test/compose) both run it.
type ScaleConfig struct {
	// JS reaches the stack's NATS.
	JS jetstream.JetStream
	// RegistryAddr is the registry's HTTP address (enrolment of the SEs).
	RegistryAddr string
	// SESimAddr is the se-simulator's HTTP address (waits for the cards).
	SESimAddr string
	// SEs to enrol (default 50), ConversationsPerSE (default 4: the begins
	// of an SE queue while it is held) and ScriptsPerConversation (default 2).
	SEs, ConversationsPerSE, ScriptsPerConversation int
	// SEPrefix starts the SE ids (CIN, 16 hex digits) so that runs on one
	// stack keep apart (default "0A").
	SEPrefix string
	// RunID makes the request ids of this run unique (default: a fresh id).
	RunID string
	// Timeout of each SP call (default 3m: a begin may wait behind the other
	// conversations of its SE, and a partition may move meanwhile).
	Timeout time.Duration
	// Midway, if set, runs once a third of the conversations have ended (a
	// test kills a replica there); the workload goes on meanwhile.
	Midway func()
	// Logf reports progress (optional).
	Logf func(format string, args ...any)
}

// ScaleResult is what a scale run did and found.
type ScaleResult struct {
	Conversations, Requests int
	// Duration of the conversations (enrolment excluded).
	Duration time.Duration
	// Executes is the number of tsm.se.<se>.execute messages of the run's SEs.
	Executes int
	// RepeatedExecutes counts executes repeated back to back (the same script
	// re-sent to the SE after a partition moved; the card model runs a
	// repeated script's APDUs once more, which the order check tolerates only
	// right after the first copy).
	RepeatedExecutes int
}

func (c *ScaleConfig) defaults() {
	if c.SEs <= 0 {
		c.SEs = 50
	}
	if c.ConversationsPerSE <= 0 {
		c.ConversationsPerSE = 4
	}
	if c.ScriptsPerConversation <= 0 {
		c.ScriptsPerConversation = 2
	}
	if c.SEPrefix == "" {
		c.SEPrefix = "0A"
	}
	if c.RunID == "" {
		c.RunID = strings.ToLower(bus.NewID())
	}
	if c.Timeout <= 0 {
		c.Timeout = 3 * time.Minute
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// ScaleSEs returns the SE ids of the workload.
func (c ScaleConfig) ScaleSEs() []string {
	c.defaults()
	ids := make([]string, c.SEs)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%0*X", c.SEPrefix, 16-len(c.SEPrefix), i+1)
	}
	return ids
}

// EnrollScale enrols the demo MNOs and SPs (SeedDemo) and the workload's SEs,
// each with pre-issued SDs of both demo SPs, half on each demo MNO, and waits
// until the se-simulator manufactured every card.
func EnrollScale(ctx context.Context, cfg ScaleConfig) error {
	cfg.defaults()
	if err := SeedDemo(ctx, cfg.RegistryAddr); err != nil {
		return err
	}
	var pre []map[string]string
	for _, sp := range DemoSPs {
		pre = append(pre, map[string]string{"spId": sp.SPID, "aid": sp.SDAID})
	}
	ses := cfg.ScaleSEs()
	// MSIs are unique per SE prefix too.
	msiBlock := 0
	for _, b := range []byte(cfg.SEPrefix) {
		msiBlock = (msiBlock*31 + int(b)) % 1000
	}
	for i, se := range ses {
		mno, typ, conf := "mno-a", "eSE", "embedded"
		if i%2 == 1 {
			mno, typ, conf = "mno-b", "UICC", "uicc"
		}
		body := map[string]any{
			"msi": fmt.Sprintf("+4915%03d%06d", msiBlock, i+1), "msiType": "MSISDN", "mno": mno, "seType": typ,
			"configuration": conf, "profileId": "demo-profile-1", "gpVersion": "2.3.1", "javaCardVersion": "3.0.5",
			"certificationLevel": "EMVCo", "expiresAt": "2036-01-01T00:00:00Z", "preIssuedSpDomains": pre,
		}
		if err := put(ctx, "http://"+cfg.RegistryAddr+"/v1/ses/"+se, body); err != nil {
			return err
		}
	}
	if cfg.SESimAddr == "" {
		return nil
	}
	for _, se := range ses {
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cfg.SESimAddr+"/v1/cards/"+se+"/counters", nil)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("card %s not manufactured: %w", se, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// scaleConv is one conversation of the workload.
type scaleConv struct {
	sp, se string
	// requests are the ids of begin, the send-scripts and end, in order.
	requests []string
	convID   string
}

func (c *scaleConv) sendID(i int) string { return c.requests[1+i] }

// RunScale runs the workload on enrolled SEs (EnrollScale) and checks it:
// every request got exactly one response (TSM_RES, by ce-correlationid), the
// conversations of an SE never interleave at the SE, and each conversation's
// scripts reach the SE in the order the SP sent them (TSM_STEPS,
// tsm.se.<se>.execute in stream order). Script i of a conversation is i+1
// SELECTs of the SP's SD, so scripts are also told apart by their APDUs.
func RunScale(ctx context.Context, cfg ScaleConfig) (ScaleResult, error) {
	cfg.defaults()
	ses := cfg.ScaleSEs()
	clients := map[string]*spclient.Client{}
	sdOf := map[string]string{}
	for _, sp := range DemoSPs {
		c, err := spclient.New(cfg.JS, sp.SPID, spclient.WithTimeout(cfg.Timeout))
		if err != nil {
			return ScaleResult{}, err
		}
		defer c.Close()
		clients[sp.SPID] = c
		sdOf[sp.SPID] = sp.SDAID
	}
	var convs []*scaleConv
	for n := 0; n < cfg.ConversationsPerSE; n++ {
		for i, se := range ses {
			sp := DemoSPs[(i+n)%len(DemoSPs)].SPID
			c := &scaleConv{sp: sp, se: se}
			for r := 0; r < cfg.ScriptsPerConversation+2; r++ {
				c.requests = append(c.requests, fmt.Sprintf("scale-%s-%s-%d-%d", cfg.RunID, se, n, r))
			}
			convs = append(convs, c)
		}
	}
	byRequest := map[string]*scaleConv{}
	for _, c := range convs {
		for _, r := range c.requests {
			byRequest[r] = c
		}
	}
	var (
		ended   atomic.Int64
		midOnce sync.Once
		wg      sync.WaitGroup
		errMu   sync.Mutex
		errs    []error
	)
	fail := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	start := time.Now()
	cfg.Logf("scale: %d conversations on %d SEs, %d scripts each", len(convs), len(ses), cfg.ScriptsPerConversation)
	for _, c := range convs {
		wg.Go(func() {
			if err := runScaleConv(ctx, cfg, clients[c.sp], sdOf[c.sp], c); err != nil {
				fail(err)
				return
			}
			if n := ended.Add(1); cfg.Midway != nil && int(n) >= len(convs)/3 {
				midOnce.Do(func() { go cfg.Midway() })
			}
			if n := ended.Load(); n%50 == 0 {
				cfg.Logf("scale: %d of %d conversations ended after %s", n, len(convs), time.Since(start).Round(time.Millisecond))
			}
		})
	}
	wg.Wait()
	res := ScaleResult{Conversations: len(convs), Requests: len(byRequest), Duration: time.Since(start)}
	if len(errs) > 0 {
		return res, fmt.Errorf("%d of %d conversations failed, first: %w", len(errs), len(convs), errs[0])
	}
	cfg.Logf("scale: every conversation ended after %s; checking responses and per-SE order", res.Duration.Round(time.Millisecond))
	if err := checkScaleResponses(ctx, cfg, byRequest); err != nil {
		return res, err
	}
	err := checkScaleOrder(ctx, cfg, ses, byRequest, &res)
	return res, err
}

func runScaleConv(ctx context.Context, cfg ScaleConfig, c *spclient.Client, sdAID string, cv *scaleConv) error {
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout*time.Duration(cfg.ScriptsPerConversation+2))
	defer cancel()
	begin, err := c.BeginConversation(cctx, contract.BeginConversationRequest{
		Common: contract.Common{ValiditySeconds: int(cfg.Timeout.Seconds())},
		SEID:   cv.se, TargetAID: sdAID, RequestedOperation: "other"}, spclient.WithRequestID(cv.requests[0]))
	if err != nil {
		return fmt.Errorf("begin %s on %s: %w", cv.requests[0], cv.se, err)
	}
	if begin.Status != contract.StatusSuccess || begin.ConversationID == "" {
		return fmt.Errorf("begin %s on %s: %+v", cv.requests[0], cv.se, begin)
	}
	cv.convID = begin.ConversationID
	sel := "00A40400" + fmt.Sprintf("%02X", len(sdAID)/2) + sdAID + "00"
	for i := 0; i < cfg.ScriptsPerConversation; i++ {
		cmds := slices.Repeat([]string{sel}, i+1)
		resp, err := c.SendScript(cctx, contract.SendScriptRequest{ConversationID: cv.convID, Commands: cmds},
			spclient.WithRequestID(cv.sendID(i)))
		if err != nil {
			return fmt.Errorf("send-script %s: %w", cv.sendID(i), err)
		}
		if resp.Status != contract.StatusSuccess || len(resp.Responses) != len(cmds) {
			return fmt.Errorf("send-script %s: %+v", cv.sendID(i), resp)
		}
	}
	end, err := c.EndConversation(cctx, contract.EndConversationRequest{ConversationID: cv.convID, Outcome: "success"},
		spclient.WithRequestID(cv.requests[len(cv.requests)-1]))
	if err != nil {
		return fmt.Errorf("end %s: %w", cv.convID, err)
	}
	if end.Status != contract.StatusSuccess {
		return fmt.Errorf("end %s: %+v", cv.convID, end)
	}
	return nil
}

// streamMsg is one stored message.
type streamMsg struct {
	subject string
	header  nats.Header
	data    []byte
}

// readStream calls each with the messages of stream on filter in stream
// order, up to the end the stream had when called. It reads them one by one
// with the stream's get API (the next message on filter from a sequence),
// retrying each get a few times: a cluster electing a leader answers
// "no responders" for a moment.
func readStream(ctx context.Context, js jetstream.JetStream, stream, filter string, each func(streamMsg) error) error {
	var st jetstream.Stream
	var info *jetstream.StreamInfo
	err := retry(ctx, func() (err error) {
		if st, err = js.Stream(ctx, stream); err != nil {
			return err
		}
		info, err = st.Info(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; {
		var m *jetstream.RawStreamMsg
		err := retry(ctx, func() (err error) {
			m, err = st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
			return err
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s %s at %d: %w", stream, filter, seq, err)
		}
		if m.Sequence > info.State.LastSeq {
			return nil
		}
		if err := each(streamMsg{subject: m.Subject, header: m.Header, data: m.Data}); err != nil {
			return err
		}
		seq = m.Sequence + 1
	}
	return nil
}

func retry(ctx context.Context, f func() error) error {
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if err = f(); err == nil || errors.Is(err, jetstream.ErrMsgNotFound) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
	return err
}

func checkScaleResponses(ctx context.Context, cfg ScaleConfig, byRequest map[string]*scaleConv) error {
	counts := map[string]int{}
	for _, sp := range DemoSPs {
		err := readStream(ctx, cfg.JS, "TSM_RES", "tsm.sp."+sp.SPID+".res.>", func(m streamMsg) error {
			if id := m.header.Get("ce-correlationid"); byRequest[id] != nil {
				counts[id]++
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	var bad []string
	for id := range byRequest {
		if counts[id] != 1 {
			bad = append(bad, fmt.Sprintf("%s: %d responses", id, counts[id]))
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Errorf("%d of %d requests did not get exactly one response: %s", len(bad), len(byRequest),
			strings.Join(bad[:min(len(bad), 10)], "; "))
	}
	return nil
}

func checkScaleOrder(ctx context.Context, cfg ScaleConfig, ses []string, byRequest map[string]*scaleConv, res *ScaleResult) error {
	mine := map[string]bool{}
	for _, se := range ses {
		mine[se] = true
	}
	type exec struct {
		conv   *scaleConv
		script int
		cmds   int
	}
	perSE := map[string][]exec{}
	err := readStream(ctx, cfg.JS, "TSM_STEPS", "tsm.se.*.execute", func(m streamMsg) error {
		se := strings.Split(m.subject, ".")[2]
		if !mine[se] {
			return nil
		}
		ev, err := bus.Decode(m.header, m.data)
		if err != nil {
			return fmt.Errorf("execute on %s: %w", m.subject, err)
		}
		var x events.SEExecute
		if err := json.Unmarshal(ev.Data(), &x); err != nil {
			return fmt.Errorf("execute on %s: %w", m.subject, err)
		}
		cv := byRequest[x.Request.RequestID]
		if cv == nil {
			return fmt.Errorf("execute on %s for request %q, which this run did not send", se, x.Request.RequestID)
		}
		script := slices.Index(cv.requests, x.Request.RequestID) - 1
		if script < 0 || script >= cfg.ScriptsPerConversation || cv.se != se || x.ConversationID != cv.convID {
			return fmt.Errorf("execute on %s for request %s of conversation %s on %s", se, x.Request.RequestID, cv.convID, cv.se)
		}
		perSE[se] = append(perSE[se], exec{conv: cv, script: script, cmds: len(x.Commands)})
		res.Executes++
		return nil
	})
	if err != nil {
		return err
	}
	for _, se := range ses {
		done := map[*scaleConv]bool{}
		var cur *scaleConv
		next := 0
		var prev *exec
		for i, x := range perSE[se] {
			if prev != nil && prev.conv == x.conv && prev.script == x.script {
				res.RepeatedExecutes++
				continue
			}
			if x.conv != cur {
				if cur != nil && next != cfg.ScriptsPerConversation {
					return fmt.Errorf("SE %s: conversation %s interrupted after %d of its scripts by %s", se, cur.convID, next, x.conv.convID)
				}
				if done[x.conv] {
					return fmt.Errorf("SE %s: conversation %s came back after another one (interleaved)", se, x.conv.convID)
				}
				if cur != nil {
					done[cur] = true
				}
				cur, next = x.conv, 0
			}
			if x.script != next {
				return fmt.Errorf("SE %s: conversation %s: script %d reached the SE where script %d was due", se, cur.convID, x.script, next)
			}
			if x.cmds != x.script+1 {
				return fmt.Errorf("SE %s: script %d of %s has %d commands, want %d", se, x.script, cur.convID, x.cmds, x.script+1)
			}
			next++
			prev = &perSE[se][i]
		}
		if cur != nil {
			done[cur] = true
		}
		if len(done) != cfg.ConversationsPerSE {
			return fmt.Errorf("SE %s: %d conversations reached it, want %d", se, len(done), cfg.ConversationsPerSE)
		}
	}
	return nil
}
