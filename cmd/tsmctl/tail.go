package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

var tailCommand = &command{
	name:    "tail",
	summary: "live view of every step on every stream, one line per event",
	usage:   "[--se <seId>] [--conversation <id>] [--sp <spId>] [--since 10m] [--subjects 'tsm.>']",
	help: `Reads TSM_REQ, TSM_RES, TSM_STEPS, TSM_REG and TSM_DLQ with one ordered consumer
per stream (nothing is acknowledged or changed) and prints one line per event:
time, stream and sequence, subject, ce-type, ce-id, correlation id, SE,
conversation, counts of commands and responses, status and error code of
responses, and the reason of dead letters. Central content management adds:
the procedure (proc=pre-personalize, by=operator:se-status for the operator's)
and its card step (step=create-sd), the service (svc=1/1), instance and SD
AIDs, instance states (state=suspended prev=active cause=se-status), SE status
changes, who holds an SD's keys (keys=central|sp), the number of instances and
audit entries of a content change, and that temporary keys were asked for or
returned (temp-keys=30:requested, temp-keys=30:wrapped) or rotated
(rotated=<sd>:31): never the keys, wrapped or not. APDU data, keys and MSIs are
never printed. With --json each line is a JSON object with the same fields.

Filters: --se matches the SE token of the subject, ce-subject or the body's
seId; --conversation the body's conversationId or ce-subject; --sp the SP token
of the subject, ce-source or the body's request.spId (only when --sp is given on
the command line: $TSM_SP does not filter). --subjects is a comma-separated
list of subject patterns. --since 0 shows only new events. Stops on Ctrl-C.
Lines of different streams are printed as they arrive.`,
	flags: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) int {
		o := tailOptions{}
		fs.StringVar(&o.filter.SE, "se", "", "only events of this SE id")
		fs.StringVar(&o.filter.Conversation, "conversation", "", "only events of this conversation id")
		fs.DurationVar(&o.since, "since", 10*time.Minute, "also show events stored this long ago (0: only new ones)")
		fs.StringVar(&o.subjects, "subjects", "tsm.>", "subject patterns to read, comma separated")
		return func(ctx context.Context, e *env, args []string) int {
			if len(args) > 0 {
				e.errorf("tail takes no arguments")
				return exitUsage
			}
			if e.g.spSet {
				o.filter.SP = e.g.spID
			}
			o.filter.SE = strings.ToUpper(o.filter.SE)
			nc, js, err := e.connect()
			if err != nil {
				e.errorf("%v", err)
				return exitFailed
			}
			defer nc.Close()
			if err := tail(ctx, js, o, e.g.json, e.stdout, e.stderr); err != nil {
				e.errorf("%v", err)
				return exitFailed
			}
			return exitOK
		}
	},
}

// tailOptions configure tail.
type tailOptions struct {
	filter   tailFilter
	since    time.Duration
	subjects string
}

// tailFilter keeps the events of one SE, conversation and/or SP.
type tailFilter struct {
	SE           string
	Conversation string
	SP           string
}

// match reports whether an event passes every filter that is set.
func (f tailFilter) match(l *eventLine) bool {
	if f.SE != "" && l.SE != f.SE && l.ceSubject != f.SE {
		return false
	}
	if f.Conversation != "" && l.Conversation != f.Conversation && l.ceSubject != f.Conversation {
		return false
	}
	if f.SP != "" && l.SP != f.SP {
		return false
	}
	return true
}

// eventLine is the printable summary of one stored message. It holds
// identifiers, counts and codes only: never APDU data, keys or MSIs.
type eventLine struct {
	Time          time.Time `json:"time"`
	Stream        string    `json:"stream"`
	Seq           uint64    `json:"seq"`
	Subject       string    `json:"subject"`
	Type          string    `json:"type,omitempty"`
	ID            string    `json:"id,omitempty"`
	CorrelationID string    `json:"correlationId,omitempty"`
	SP            string    `json:"sp,omitempty"`
	SE            string    `json:"se,omitempty"`
	Conversation  string    `json:"conversation,omitempty"`
	Commands      *int      `json:"commands,omitempty"`
	Responses     *int      `json:"responses,omitempty"`
	Failed        *int      `json:"failed,omitempty"`
	Status        string    `json:"status,omitempty"`
	ErrorCode     string    `json:"errorCode,omitempty"`
	Outcome       string    `json:"outcome,omitempty"`
	// Central content management (docs/content-management.md).
	Procedure     string `json:"procedure,omitempty"`
	Operator      string `json:"operator,omitempty"`
	Step          string `json:"step,omitempty"`
	Service       string `json:"service,omitempty"`
	Instance      string `json:"instance,omitempty"`
	SD            string `json:"sd,omitempty"`
	State         string `json:"state,omitempty"`
	PreviousState string `json:"previousState,omitempty"`
	Cause         string `json:"cause,omitempty"`
	SEStatus      string `json:"seStatus,omitempty"`
	KeysHeldBy    string `json:"keysHeldBy,omitempty"`
	Instances     *int   `json:"instances,omitempty"`
	AuditEntries  *int   `json:"auditEntries,omitempty"`
	// TemporaryKeys is "<kvn>:requested" or "<kvn>:wrapped": never a key.
	TemporaryKeys string `json:"temporaryKeys,omitempty"`
	// KeysRotated lists "<sd aid>:<kvn>" of SDs whose keys the SP replaced.
	KeysRotated string `json:"keysRotated,omitempty"`
	// DLQ fields: the reason and where the message came from.
	DLQReason   string `json:"dlqReason,omitempty"`
	DLQSubject  string `json:"dlqSubject,omitempty"`
	DLQConsumer string `json:"dlqConsumer,omitempty"`
	// ReplayOf is the stream/sequence a `tsmctl replay` copied this from.
	ReplayOf string `json:"replayOf,omitempty"`
	// Undecodable says why the message is not a CloudEvent.
	Undecodable string `json:"undecodable,omitempty"`
	ceSubject   string
}

// bodySummary is the part of any tsmhub body tail looks at.
type bodySummary struct {
	SEID           string                 `json:"seId"`
	ConversationID string                 `json:"conversationId"`
	Status         string                 `json:"status"`
	Error          *struct{ Code string } `json:"error"`
	Outcome        string                 `json:"outcome"`
	Commands       []json.RawMessage      `json:"commands"`
	Responses      []json.RawMessage      `json:"responses"`
	Failed         []json.RawMessage      `json:"failed"`
	Request        *struct {
		SPID string `json:"spId"`
		Op   string `json:"op"`
	} `json:"request"`
	Params *struct {
		SEID string `json:"seId"`
	} `json:"params"`
	SE *struct {
		SEID string `json:"seId"`
	} `json:"se"`
	Response *struct {
		Status    string                 `json:"status"`
		Error     *struct{ Code string } `json:"error"`
		Responses []json.RawMessage      `json:"responses"`
		Failed    []json.RawMessage      `json:"failed"`
	} `json:"response"`
	contentSummary
}

// contentSummary is the part of the bodies of central content management
// tail looks at: procedures, content changes, service responses and
// notifications. Key material (temporaryKeys.wrapped) is never decoded.
type contentSummary struct {
	SPID              string         `json:"spId"`
	Kind              string         `json:"kind"`
	SEStatus          string         `json:"seStatus"`
	State             string         `json:"state"`
	PreviousState     string         `json:"previousState"`
	PreviousStatus    string         `json:"previousStatus"`
	Cause             string         `json:"cause"`
	ServiceID         *serviceNumber `json:"serviceId"`
	Service           *serviceNumber `json:"service"`
	InstanceAID       string         `json:"instanceAid"`
	SecurityDomainAID string         `json:"securityDomainAid"`
	SecurityDomain    *struct {
		AID        string `json:"aid"`
		KeysHeldBy string `json:"keysHeldBy"`
	} `json:"securityDomain"`
	Services []json.RawMessage `json:"services"`
	Audit    *struct {
		Entries []json.RawMessage `json:"entries"`
	} `json:"audit"`
	Procedure *struct {
		Step          string `json:"step"`
		TemporaryKeys *struct {
			SecurityDomainAID string `json:"securityDomainAid"`
			KeyVersion        int    `json:"keyVersion"`
		} `json:"temporaryKeys"`
	} `json:"procedure"`
	TemporaryKeys *struct {
		KeyVersion int `json:"keyVersion"`
	} `json:"temporaryKeys"`
	KeysRotated []struct {
		SecurityDomainAID string `json:"securityDomainAid"`
		KeyVersion        int    `json:"keyVersion"`
	} `json:"keysRotated"`
}

type serviceNumber struct {
	Number  string `json:"number"`
	Version string `json:"version"`
}

func (s *serviceNumber) String() string {
	if s == nil || s.Number == "" {
		return ""
	}
	return s.Number + "/" + s.Version
}

// content fills the content management fields of l; op is the request's
// operation when its spId is empty (an operator procedure).
func (c *contentSummary) content(l *eventLine, operatorOp string) {
	if l.SP == "" {
		l.SP = c.SPID
	}
	l.Procedure, l.Step, l.SEStatus = c.Kind, "", c.SEStatus
	if c.Kind != "" && operatorOp != "" {
		l.Operator = operatorOp
	}
	if p := c.Procedure; p != nil {
		l.Step = p.Step
		if tk := p.TemporaryKeys; tk != nil {
			l.TemporaryKeys = fmt.Sprintf("%02X:requested", tk.KeyVersion)
			l.SD = tk.SecurityDomainAID
		}
	}
	if tk := c.TemporaryKeys; tk != nil {
		l.TemporaryKeys = fmt.Sprintf("%02X:wrapped", tk.KeyVersion)
	}
	var rotated []string
	for _, r := range c.KeysRotated {
		rotated = append(rotated, fmt.Sprintf("%s:%02X", r.SecurityDomainAID, r.KeyVersion))
	}
	l.KeysRotated = strings.Join(rotated, ",")
	l.Service = c.ServiceID.String()
	if l.Service == "" {
		l.Service = c.Service.String()
	}
	l.Instance, l.State, l.PreviousState, l.Cause = c.InstanceAID, c.State, c.PreviousState, c.Cause
	if c.PreviousStatus != "" {
		l.PreviousState = c.PreviousStatus
	}
	if c.SecurityDomainAID != "" && l.SD == "" && (c.Kind != "" || l.State != "" || l.Service != "") {
		l.SD = c.SecurityDomainAID
	}
	if sd := c.SecurityDomain; sd != nil {
		l.SD, l.KeysHeldBy = sd.AID, sd.KeysHeldBy
	}
	if c.Services != nil || l.Type == events.TypeContentChanged {
		n := len(c.Services)
		l.Instances = &n
	}
	if c.Audit != nil {
		l.AuditEntries = count(c.Audit.Entries)
		if l.AuditEntries == nil {
			n := 0
			l.AuditEntries = &n
		}
	}
}

// summarize builds the line of one stored message.
func summarize(stream, subject string, h nats.Header, body []byte, seq uint64, ts time.Time) *eventLine {
	l := &eventLine{Time: ts, Stream: stream, Seq: seq, Subject: subject}
	origin := subject
	if r := headerValue(h, bus.HeaderDLQReason); r != "" || stream == topology.StreamDeadLetters.Name {
		l.DLQReason = r
		l.DLQSubject = headerValue(h, bus.HeaderDLQSubject)
		l.DLQConsumer = headerValue(h, bus.HeaderDLQConsumer)
		if l.DLQSubject != "" {
			origin = l.DLQSubject
		}
	}
	l.ReplayOf = headerValue(h, headerReplayOf)
	ev, err := bus.Decode(h, body)
	if err != nil {
		l.Undecodable = err.Error()
	}
	l.Type, l.ID, l.ceSubject = ev.Type(), ev.ID(), ev.Subject()
	l.CorrelationID = bus.StringExtension(ev, bus.ExtCorrelationID)
	if sp, _, _, ok := topology.ParseSPSubject(origin); ok {
		l.SP = sp
	} else if src := ev.Source(); strings.HasPrefix(src, topology.SPSourcePrefix) {
		l.SP = strings.TrimPrefix(src, topology.SPSourcePrefix)
	}
	l.SE = seFromSubject(origin)

	var b bodySummary
	if json.Unmarshal(body, &b) == nil {
		if l.SE == "" {
			for _, id := range []string{b.SEID, nested(b.Params), nested(b.SE)} {
				if id != "" {
					l.SE = id
					break
				}
			}
		}
		if l.SP == "" && b.Request != nil {
			l.SP = b.Request.SPID
		}
		l.Conversation = b.ConversationID
		l.Status, l.Outcome = b.Status, b.Outcome
		if b.Error != nil {
			l.ErrorCode = b.Error.Code
		}
		l.Commands, l.Responses, l.Failed = count(b.Commands), count(b.Responses), count(b.Failed)
		operatorOp := ""
		if b.Request != nil && b.Request.SPID == "" {
			operatorOp = b.Request.Op
		}
		b.content(l, operatorOp)
		if r := b.Response; r != nil {
			if l.Status == "" {
				l.Status = r.Status
			}
			if l.ErrorCode == "" && r.Error != nil {
				l.ErrorCode = r.Error.Code
			}
			if l.Responses == nil {
				l.Responses = count(r.Responses)
			}
			if l.Failed == nil {
				l.Failed = count(r.Failed)
			}
		}
	}
	if l.SE == "" && topology.ValidSEID(l.ceSubject) {
		l.SE = l.ceSubject
	}
	if l.Conversation == "" && l.ceSubject != "" && l.ceSubject != l.SE {
		// Responses about a conversation name it in ce-subject.
		if strings.HasSuffix(l.Type, "conversation"+topology.ResponseTypeSuffix) || strings.HasPrefix(l.Type, "tsm.send-script") {
			l.Conversation = l.ceSubject
		}
	}
	return l
}

func nested(v *struct {
	SEID string `json:"seId"`
}) string {
	if v == nil {
		return ""
	}
	return v.SEID
}

func count(list []json.RawMessage) *int {
	if list == nil {
		return nil
	}
	n := len(list)
	return &n
}

// seSubjectPatterns are the internal subjects with an SE token: built from
// the topology's own subject builders with a marker in the SE position, so
// tail follows the topology rather than spelling subjects.
var seSubjectPatterns = func() []subjectPattern {
	const marker = "SEMARKER"
	builders := []func(string) string{
		topology.ConversationBegin, topology.ScriptRequested, topology.ScriptCompleted,
		topology.SEExecute, topology.SEExecuted, topology.RegistrySE,
		func(se string) string { return topology.MNODeliver("MNOMARKER", se) },
	}
	var out []subjectPattern
	for _, b := range builders {
		tokens := strings.Split(b(marker), ".")
		p := subjectPattern{seIndex: -1}
		for i, t := range tokens {
			switch t {
			case marker:
				p.seIndex = i
				t = "*"
			case "MNOMARKER":
				t = "*"
			}
			p.tokens = append(p.tokens, t)
		}
		// Every step of an SE, not only the builder's event name.
		p.tokens[len(p.tokens)-1] = "*"
		out = append(out, p)
	}
	return out
}()

type subjectPattern struct {
	tokens  []string
	seIndex int
}

// seFromSubject returns the SE id token of an internal subject ("" if none).
func seFromSubject(subject string) string {
	t := strings.Split(subject, ".")
	for _, p := range seSubjectPatterns {
		if len(p.tokens) != len(t) {
			continue
		}
		ok := true
		for i, pt := range p.tokens {
			if pt != "*" && pt != t[i] {
				ok = false
				break
			}
		}
		if ok {
			return t[p.seIndex]
		}
	}
	return ""
}

// String is the human line.
func (l *eventLine) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-9s #%-6d %s", l.Time.Local().Format("15:04:05.000"), l.Stream, l.Seq, l.Subject)
	add := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	if l.Type != "" {
		b.WriteString(" " + l.Type)
	}
	add("id", l.ID)
	add("corr", l.CorrelationID)
	add("sp", l.SP)
	add("se", l.SE)
	add("conv", l.Conversation)
	for _, c := range []struct {
		k string
		v *int
	}{{"cmds", l.Commands}, {"resps", l.Responses}, {"failed", l.Failed}} {
		if c.v != nil {
			add(c.k, strconv.Itoa(*c.v))
		}
	}
	add("status", l.Status)
	add("error", l.ErrorCode)
	add("outcome", l.Outcome)
	add("proc", l.Procedure)
	add("by", operatorText(l.Operator))
	add("step", l.Step)
	add("svc", l.Service)
	add("instance", l.Instance)
	add("sd", l.SD)
	add("keys", l.KeysHeldBy)
	add("state", l.State)
	add("prev", l.PreviousState)
	add("cause", l.Cause)
	add("se-status", l.SEStatus)
	if l.Instances != nil {
		add("instances", strconv.Itoa(*l.Instances))
	}
	if l.AuditEntries != nil {
		add("audit-entries", strconv.Itoa(*l.AuditEntries))
	}
	add("temp-keys", l.TemporaryKeys)
	add("rotated", l.KeysRotated)
	add("from", l.DLQSubject)
	add("consumer", l.DLQConsumer)
	add("replay-of", l.ReplayOf)
	if l.DLQReason != "" {
		add("reason", strconv.Quote(l.DLQReason))
	}
	if l.Undecodable != "" {
		add("undecodable", strconv.Quote(l.Undecodable))
	}
	return b.String()
}

func operatorText(op string) string {
	if op == "" {
		return ""
	}
	return "operator:" + op
}

// tailItem is what a stream's consumer hands to the printer: a line (nil
// when its subject is not wanted) and whether it belongs to the stored
// backlog; done marks the end of the stream's backlog.
type tailItem struct {
	line    *eventLine
	backlog bool
	done    bool
}

// backlogWait bounds how long tail waits for every stream's stored events
// before it prints them (a stream whose last stored message vanished, e.g. a
// replaced registry record, would otherwise never say it is done).
const backlogWait = 10 * time.Second

// tail prints the events of every stream until ctx ends: first the stored
// ones (--since) of all streams merged in time order, then new ones as they
// arrive.
func tail(ctx context.Context, js jetstream.JetStream, o tailOptions, asJSON bool, out, errOut io.Writer) error {
	patterns := splitPatterns(o.subjects)
	if len(patterns) == 0 {
		return fmt.Errorf("--subjects: give at least one subject pattern")
	}
	items := make(chan tailItem, 1024)
	var wg sync.WaitGroup
	started := 0
	for _, s := range topology.Streams {
		filters, read := streamFilters(patterns, s.Subjects)
		if !read {
			continue
		}
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverNewPolicy,
			InactiveThreshold: time.Minute}
		if o.since > 0 {
			start := time.Now().Add(-o.since)
			cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err := js.OrderedConsumer(sctx, s.Name, cfg)
		cancel()
		if err != nil {
			fmt.Fprintf(errOut, "tsmctl: tail: skipping stream %s: %v\n", s.Name, err)
			continue
		}
		// The consumer counts the stored messages it will deliver first.
		hasBacklog := o.since > 0
		if info := cons.CachedInfo(); info == nil || info.NumPending == 0 {
			hasBacklog = false
		}
		send := func(it tailItem) {
			select {
			case items <- it:
			case <-ctx.Done():
			}
		}
		// Set while the consumer delivers stored messages; atomic because a
		// re-created ordered consumer calls back from another goroutine.
		var inBacklog atomic.Bool
		inBacklog.Store(hasBacklog)
		stream := s.Name
		cc, err := cons.Consume(func(m jetstream.Msg) {
			var seq, pending uint64
			var ts time.Time
			if md, err := m.Metadata(); err == nil {
				seq, ts, pending = md.Sequence.Stream, md.Timestamp, md.NumPending
			}
			it := tailItem{backlog: inBacklog.Load()}
			if matchAny(patterns, m.Subject()) {
				it.line = summarize(stream, m.Subject(), m.Headers(), m.Data(), seq, ts)
			}
			send(it)
			if it.backlog && pending == 0 {
				inBacklog.Store(false)
				send(tailItem{done: true})
			}
		})
		if err != nil {
			fmt.Fprintf(errOut, "tsmctl: tail: skipping stream %s: %v\n", s.Name, err)
			continue
		}
		if !hasBacklog {
			send(tailItem{done: true})
		}
		started++
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ctx.Done()
			cc.Stop()
		}()
	}
	if started == 0 {
		return fmt.Errorf("no stream to read: do the streams exist and does --subjects %q match any of them?", o.subjects)
	}
	p := &tailPrinter{filter: o.filter, asJSON: asJSON, enc: json.NewEncoder(out), out: out, tracker: newTracker()}

	// Backlog: collect every stream's stored events, print them in time order.
	var backlog, early []*eventLine
	timeout := time.NewTimer(backlogWait)
	defer timeout.Stop()
	for remaining := started; remaining > 0; {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-timeout.C:
			fmt.Fprintf(errOut, "tsmctl: tail: %d streams still delivering stored events after %s; going live\n", remaining, backlogWait)
			remaining = 0
		case it := <-items:
			switch {
			case it.done:
				remaining--
			case it.line == nil:
			case it.backlog:
				backlog = append(backlog, it.line)
			default:
				early = append(early, it.line)
			}
		}
	}
	sort.SliceStable(backlog, func(i, j int) bool { return backlog[i].Time.Before(backlog[j].Time) })
	for _, l := range append(backlog, early...) {
		p.emit(l)
	}
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case it := <-items:
			if it.line != nil {
				p.emit(it.line)
			}
		}
	}
}

// tailPrinter enriches, filters and prints lines, one at a time.
type tailPrinter struct {
	filter  tailFilter
	asJSON  bool
	enc     *json.Encoder
	out     io.Writer
	tracker *tracker
}

func (p *tailPrinter) emit(l *eventLine) {
	p.tracker.enrich(l)
	if !p.filter.match(l) {
		return
	}
	if p.asJSON {
		_ = p.enc.Encode(l)
		return
	}
	fmt.Fprintln(p.out, l.String())
}

// trackerLimit bounds the tracker's maps on a long tail.
const trackerLimit = 100000

// tracker learns which SE a request and a conversation belong to, so that
// events that name only a conversation (send-script, end-conversation and
// their responses) or only a correlation id still pass the --se filter: the
// begin-conversation request names the SE, its response (same correlation
// id) the conversation.
type tracker struct {
	seOfRequest      map[string]string
	seOfConversation map[string]string
}

func newTracker() *tracker {
	return &tracker{seOfRequest: map[string]string{}, seOfConversation: map[string]string{}}
}

func (t *tracker) enrich(l *eventLine) {
	if len(t.seOfRequest) > trackerLimit || len(t.seOfConversation) > trackerLimit {
		*t = *newTracker()
	}
	if l.SE == "" && l.Conversation != "" {
		l.SE = t.seOfConversation[l.Conversation]
	}
	if l.SE == "" && l.CorrelationID != "" {
		l.SE = t.seOfRequest[l.CorrelationID]
	}
	if l.SE == "" {
		return
	}
	if l.Conversation != "" {
		t.seOfConversation[l.Conversation] = l.SE
	}
	if l.CorrelationID != "" {
		t.seOfRequest[l.CorrelationID] = l.SE
	} else if l.Stream == topology.StreamRequests.Name && l.ID != "" {
		t.seOfRequest[l.ID] = l.SE
	}
}

func splitPatterns(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// streamFilters returns the server-side filter for a stream: the patterns
// that are narrower than one of its subjects; when a pattern is broader (the
// default tsm.>) the stream is read whole and filtered here. read is false
// when no pattern overlaps the stream.
func streamFilters(patterns, streamSubjects []string) (filters []string, read bool) {
	narrow := true
	for _, p := range patterns {
		overlaps, within := false, false
		for _, s := range streamSubjects {
			if subjectsCollide(p, s) {
				overlaps = true
			}
			if subjectSubset(p, s) {
				within = true
			}
		}
		if !overlaps {
			continue
		}
		read = true
		if within {
			filters = append(filters, p)
		} else {
			narrow = false
		}
	}
	if !narrow {
		return nil, read
	}
	return filters, read
}

// subjectsCollide reports whether some subject matches both patterns.
func subjectsCollide(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		aEnd, bEnd := i == len(at), i == len(bt)
		// ">" matches one or more tokens.
		if !aEnd && at[i] == ">" {
			return !bEnd
		}
		if !bEnd && bt[i] == ">" {
			return !aEnd
		}
		if aEnd || bEnd {
			return aEnd && bEnd
		}
		if at[i] != "*" && bt[i] != "*" && at[i] != bt[i] {
			return false
		}
	}
}

// subjectSubset reports whether every subject matching p matches s (for a
// literal p: whether p matches s).
func subjectSubset(p, s string) bool {
	pt, st := strings.Split(p, "."), strings.Split(s, ".")
	for i := 0; ; i++ {
		pEnd, sEnd := i == len(pt), i == len(st)
		if !sEnd && st[i] == ">" {
			return !pEnd
		}
		if pEnd || sEnd {
			return pEnd && sEnd
		}
		switch {
		case pt[i] == ">":
			return false
		case st[i] == "*":
		case pt[i] != st[i]:
			return false
		}
	}
}

// matchAny reports whether subject matches one of the patterns.
func matchAny(patterns []string, subject string) bool {
	for _, p := range patterns {
		if subjectSubset(subject, p) {
			return true
		}
	}
	return false
}

// headerValue reads a header case-insensitively.
func headerValue(h nats.Header, name string) string {
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0]
		}
	}
	return ""
}

// compactJSON returns body without insignificant spaces (as is if not JSON).
func compactJSON(body []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, body); err != nil {
		return body
	}
	return buf.Bytes()
}
