// Package domain holds the conversation service's entities and rules: a
// conversation (the patent's "communication") between one SP and one SE, its
// limits and expiry, the one-script-at-a-time rule, and the begins that wait
// for a busy SE. It knows nothing of the bus or of storage.
package domain

import (
	"regexp"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
)

// State is the life-cycle state of a conversation.
type State string

// Conversation states. Only an open conversation accepts scripts; ended and
// expired are final.
const (
	StateOpen    State = "open"
	StateEnded   State = "ended"
	StateExpired State = "expired"
)

// OTA carriers of an MNO (DESIGN.md section 5).
const (
	CarrierHTTPS = "https"
	CarrierSMS   = "sms"
)

// Default limits, used when the configuration leaves them zero.
const (
	DefaultMaxScripts        = 16
	DefaultMaxAPDUsPerScript = 32
	// DefaultMaxScriptBytesHTTPS bounds a script sent in an HTTPS admin session.
	DefaultMaxScriptBytesHTTPS = 8192
	// DefaultMaxScriptBytesSMS bounds a script sent as concatenated SMS packets.
	DefaultMaxScriptBytesSMS = 1024
	DefaultTTL               = 5 * time.Minute
)

// Limits are what an SP may do within one conversation; they are announced in
// the begin-conversation response and enforced by this service (maxScripts) and
// the script router (APDU count and script size).
type Limits struct {
	MaxScripts        int `json:"maxScripts"`
	MaxAPDUsPerScript int `json:"maxApdusPerScript"`
	MaxScriptBytes    int `json:"maxScriptBytes"`
}

// Policy turns the service configuration and an MNO's record into the limits
// and lifetime of a new conversation.
type Policy struct {
	// MaxScripts per conversation (0: DefaultMaxScripts).
	MaxScripts int
	// DefaultMaxAPDUsPerScript applies when the MNO record sets none (0: DefaultMaxAPDUsPerScript).
	DefaultMaxAPDUsPerScript int
	// MaxScriptBytes overrides the carrier default for every carrier when > 0.
	MaxScriptBytes int
	// TTL is how long a conversation stays open (0: DefaultTTL).
	TTL time.Duration
}

// LimitsFor returns the limits of a conversation through an MNO with the
// given carrier and per-script APDU limit (0 when the MNO sets none).
func (p Policy) LimitsFor(carrier string, mnoMaxAPDUs int) Limits {
	l := Limits{MaxScripts: p.MaxScripts, MaxAPDUsPerScript: mnoMaxAPDUs, MaxScriptBytes: p.MaxScriptBytes}
	if l.MaxScripts <= 0 {
		l.MaxScripts = DefaultMaxScripts
	}
	if l.MaxAPDUsPerScript <= 0 {
		l.MaxAPDUsPerScript = p.DefaultMaxAPDUsPerScript
	}
	if l.MaxAPDUsPerScript <= 0 {
		l.MaxAPDUsPerScript = DefaultMaxAPDUsPerScript
	}
	if l.MaxScriptBytes <= 0 {
		// An SMS bearer carries far less per script than an HTTPS admin session.
		l.MaxScriptBytes = DefaultMaxScriptBytesHTTPS
		if carrier == CarrierSMS {
			l.MaxScriptBytes = DefaultMaxScriptBytesSMS
		}
	}
	return l
}

// Lifetime is how long a new conversation stays open.
func (p Policy) Lifetime() time.Duration {
	if p.TTL <= 0 {
		return DefaultTTL
	}
	return p.TTL
}

// BeginRequest is an SP's begin-conversation as resolved by the registry: the
// SE, its MNO and the SP's parameters. It is what a waiting begin keeps.
type BeginRequest struct {
	// Request identifies the SP request (spId/ce-id) to answer.
	Request events.RequestRef `json:"request"`
	SEID    string            `json:"seId"`
	MNOID   string            `json:"mnoId"`
	// OTACarrier and MNOMaxAPDUsPerScript come from the MNO record.
	OTACarrier           string                     `json:"otaCarrier"`
	MNOMaxAPDUsPerScript int                        `json:"mnoMaxApdusPerScript,omitempty"`
	TargetAID            string                     `json:"targetAid"`
	RequestedOperation   string                     `json:"requestedOperation"`
	ServiceID            *contract.ServiceID        `json:"serviceId,omitempty"`
	ServiceQualifier     *contract.ServiceQualifier `json:"serviceQualifier,omitempty"`
	ScriptFormat         string                     `json:"scriptFormat,omitempty"`
	// ValidUntil is zero when the SP set no validitySeconds: such a begin is
	// refused at once on a busy SE instead of waiting.
	ValidUntil time.Time `json:"validUntil,omitempty"`
}

// aidPattern is an AID: 5 to 16 bytes in hex (ISO/IEC 7816-5).
var aidPattern = regexp.MustCompile(`^(?:[0-9A-Fa-f]{2}){5,16}$`)

// Validate checks what the request schema cannot (or what a registry bug
// could break). The error says what to fix.
func (b BeginRequest) Validate() *contract.Error {
	switch b.RequestedOperation {
	case contract.OperationKeyRotation, contract.OperationPersonalization,
		contract.OperationPostPersonalization, contract.OperationOther:
	default:
		return contract.Errorf(contract.CodeInvalidArgument,
			"requestedOperation %q is not one of key-rotation, personalization, post-personalization, other", b.RequestedOperation)
	}
	switch b.ScriptFormat {
	case "", contract.ScriptFormatExpanded, contract.ScriptFormatCompact:
	default:
		return contract.Errorf(contract.CodeInvalidArgument, "scriptFormat %q is not expanded or compact", b.ScriptFormat)
	}
	if !aidPattern.MatchString(b.TargetAID) {
		return contract.Errorf(contract.CodeInvalidArgument, "targetAid %q is not an AID: give 5 to 16 bytes in hex", b.TargetAID)
	}
	if b.MNOID == "" {
		return contract.Errorf(contract.CodeInternalError, "SE %s has no MNO in the registry; ask the operator to fix its record", b.SEID)
	}
	if b.OTACarrier != CarrierHTTPS && b.OTACarrier != CarrierSMS {
		return contract.Errorf(contract.CodeInternalError,
			"MNO %s of SE %s has no usable OTA carrier (%q); ask the operator to fix its record", b.MNOID, b.SEID, b.OTACarrier)
	}
	return nil
}

// ExpiredAt reports whether the request's validitySeconds ran out by now.
func (b BeginRequest) ExpiredAt(now time.Time) bool {
	return !b.ValidUntil.IsZero() && !now.Before(b.ValidUntil)
}

// WaitingBegin is a begin, or a procedure, queued behind the conversation or
// procedure holding its SE.
type WaitingBegin struct {
	// Key orders the waiting begins of one SE (first in, first out, operator
	// procedures first); set by storage.
	Key   string       `json:"-"`
	Begin BeginRequest `json:"begin"`
	// Procedure, when set, is a procedure waiting for the SE (Begin is then empty).
	Procedure  *Procedure `json:"procedure,omitempty"`
	EnqueuedAt time.Time  `json:"enqueuedAt"`
}

// SEID is the SE waited for.
func (w WaitingBegin) SEID() string {
	if w.Procedure != nil {
		return w.Procedure.SEID
	}
	return w.Begin.SEID
}

// ExpiredAt reports whether the waiting request's validitySeconds ran out.
// Operator procedures never expire: they wait until the SE is free.
func (w WaitingBegin) ExpiredAt(now time.Time) bool {
	if w.Procedure != nil {
		return w.Procedure.ExpiredAt(now)
	}
	return w.Begin.ExpiredAt(now)
}

// Priority reports whether the waiting request goes before the others: an
// operator procedure (lost, stolen, found, audit) runs as soon as the SE is
// free, ahead of the SPs' waiting begins and procedures.
func (w WaitingBegin) Priority() bool { return w.Procedure != nil && w.Procedure.Operator() }

// RunningScript is the script of a conversation that has been handed to the
// script router and not yet answered.
type RunningScript struct {
	ScriptID string `json:"scriptId"`
	// Request is the SP's send-script: its response goes to that request key.
	Request   events.RequestRef `json:"request"`
	StartedAt time.Time         `json:"startedAt"`
}

// Conversation is an SP's exclusive session with one SE, or (Kind
// procedure) a central TSM procedure holding the SE the same way: one holder
// per SE, the same queue of waiting requests, the same release.
type Conversation struct {
	ID string `json:"conversationId"`
	// Kind is KindConversation ("") or KindProcedure.
	Kind string `json:"kind,omitempty"`
	// Procedure is the procedure's state (Kind procedure only).
	Procedure          *Procedure                 `json:"procedure,omitempty"`
	SEID               string                     `json:"seId"`
	SPID               string                     `json:"spId"`
	MNOID              string                     `json:"mnoId"`
	TargetAID          string                     `json:"targetAid"`
	RequestedOperation string                     `json:"requestedOperation"`
	ServiceID          *contract.ServiceID        `json:"serviceId,omitempty"`
	ServiceQualifier   *contract.ServiceQualifier `json:"serviceQualifier,omitempty"`
	ScriptFormat       string                     `json:"scriptFormat"`
	OTACarrier         string                     `json:"otaCarrier"`
	Limits             Limits                     `json:"limits"`
	State              State                      `json:"state"`
	// BeganBy is the begin-conversation request that opened it.
	BeganBy   events.RequestRef `json:"beganBy"`
	OpenedAt  time.Time         `json:"openedAt"`
	ExpiresAt time.Time         `json:"expiresAt"`
	// ClosedAt is when it ended or expired.
	ClosedAt time.Time `json:"closedAt,omitempty"`
	// Outcome is the SP's end-conversation outcome (success, failure).
	Outcome string `json:"outcome,omitempty"`
	// ScriptsRun counts completed scripts.
	ScriptsRun int            `json:"scriptsRun"`
	Running    *RunningScript `json:"running,omitempty"`
}

// Open starts a conversation for a validated begin.
func Open(id string, b BeginRequest, p Policy, now time.Time) *Conversation {
	format := b.ScriptFormat
	if format == "" {
		format = contract.ScriptFormatExpanded
	}
	return &Conversation{
		ID: id, SEID: b.SEID, SPID: b.Request.SPID, MNOID: b.MNOID, TargetAID: b.TargetAID,
		RequestedOperation: b.RequestedOperation, ServiceID: b.ServiceID, ServiceQualifier: b.ServiceQualifier,
		ScriptFormat: format, OTACarrier: b.OTACarrier, Limits: p.LimitsFor(b.OTACarrier, b.MNOMaxAPDUsPerScript),
		State: StateOpen, BeganBy: b.Request, OpenedAt: now, ExpiresAt: now.Add(p.Lifetime()),
	}
}

// OpenProcedure makes the record of a procedure that takes its SE.
func OpenProcedure(p *Procedure, now time.Time) *Conversation {
	return &Conversation{ID: p.ID, Kind: KindProcedure, Procedure: p, SEID: p.SEID, SPID: p.Request.SPID, MNOID: p.MNOID,
		OTACarrier: p.OTACarrier, State: StateOpen, BeganBy: p.Request, OpenedAt: now}
}

// IsProcedure reports whether the record is a procedure.
func (c *Conversation) IsProcedure() bool { return c.Kind == KindProcedure }

// Occupies reports whether the conversation still holds its SE at now: open
// and not past its expiry. A procedure holds its SE until its last step
// completes (the script router answers every script, failures included).
func (c *Conversation) Occupies(now time.Time) bool {
	if c.IsProcedure() {
		return c.State == StateOpen
	}
	return c.State == StateOpen && now.Before(c.ExpiresAt)
}

// DueForExpiry reports whether the conversation is open but past its expiry,
// so it must be expired (SE freed, SP notified) before anything else.
// Procedures do not expire.
func (c *Conversation) DueForExpiry(now time.Time) bool {
	return !c.IsProcedure() && c.State == StateOpen && !now.Before(c.ExpiresAt)
}

// CloseProcedure ends a procedure's hold on its SE.
func (c *Conversation) CloseProcedure(now time.Time) {
	c.State = StateEnded
	c.ClosedAt = now
}

// Expire closes a conversation whose time ran out. It reports false when
// there was nothing to do (not open, or not yet due), so callers stay
// idempotent.
func (c *Conversation) Expire(now time.Time) bool {
	if !c.DueForExpiry(now) {
		return false
	}
	c.State = StateExpired
	c.ClosedAt = now
	return true
}

// NotOpen is the answer for a conversation id the SP cannot use: unknown, or
// belonging to another SP (which must not be told that it exists).
func NotOpen(conversationID string) *contract.Error {
	return contract.Errorf(contract.CodeConversationNotOpen,
		"conversation %s is unknown; begin a conversation first and use the conversationId of its response", conversationID)
}

// CheckOpenFor returns nil if spID may use the conversation at now, or the
// CONVERSATION_NOT_OPEN error to answer. Callers expire a conversation that is
// DueForExpiry before asking.
func (c *Conversation) CheckOpenFor(spID string, now time.Time) *contract.Error {
	if c == nil || c.SPID != spID || c.IsProcedure() {
		return NotOpen(convID(c))
	}
	switch {
	case c.State == StateEnded:
		return contract.Errorf(contract.CodeConversationNotOpen,
			"conversation %s ended at %s; begin a new conversation", c.ID, formatTime(c.ClosedAt))
	case c.State == StateExpired:
		return contract.Errorf(contract.CodeConversationNotOpen,
			"conversation %s expired at %s; begin a new conversation", c.ID, formatTime(c.ExpiresAt))
	case !now.Before(c.ExpiresAt):
		return contract.Errorf(contract.CodeConversationNotOpen,
			"conversation %s expired at %s; begin a new conversation", c.ID, formatTime(c.ExpiresAt))
	}
	return nil
}

func convID(c *Conversation) string {
	if c == nil {
		return ""
	}
	return c.ID
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// busy is the answer while a script runs: the SE runs one script at a time
// per conversation and its response has not been sent yet.
func (c *Conversation) busy() *contract.Error {
	return contract.Errorf(contract.CodeConversationBusy,
		"a script is still running in conversation %s; wait for its response", c.ID)
}

// StartScript accepts the script scriptID of request req into the
// conversation, or returns the error to answer. It does not check
// CheckOpenFor: call that first.
func (c *Conversation) StartScript(scriptID string, req events.RequestRef, now time.Time) *contract.Error {
	if c.Running != nil {
		return c.busy()
	}
	if c.ScriptsRun >= c.Limits.MaxScripts {
		return contract.Errorf(contract.CodeNotAllowed,
			"conversation %s has run its maximum of %d scripts; end it and begin a new conversation", c.ID, c.Limits.MaxScripts)
	}
	c.Running = &RunningScript{ScriptID: scriptID, Request: req, StartedAt: now}
	return nil
}

// CompleteScript records that the running script scriptID has been answered.
// It returns the running script, or nil when scriptID is not the one running
// (a duplicate completion, or a script of an earlier run), leaving the state
// unchanged. The conversation's expiry is not extended.
func (c *Conversation) CompleteScript(scriptID string) *RunningScript {
	if c.Running == nil || c.Running.ScriptID != scriptID {
		return nil
	}
	r := c.Running
	c.Running = nil
	c.ScriptsRun++
	return r
}

// End closes the conversation at the SP's request. Call CheckOpenFor first.
func (c *Conversation) End(outcome string, now time.Time) *contract.Error {
	if outcome != contract.OutcomeSuccess && outcome != contract.OutcomeFailure {
		return contract.Errorf(contract.CodeInvalidArgument, "outcome %q is not success or failure", outcome)
	}
	if c.Running != nil {
		return contract.Errorf(contract.CodeConversationBusy,
			"a script is still running in conversation %s; wait for its response before ending it", c.ID)
	}
	c.State = StateEnded
	c.Outcome = outcome
	c.ClosedAt = now
	return nil
}

// Busy is the answer to a begin without validitySeconds on an occupied SE.
func Busy(seID string) *contract.Error {
	return contract.Errorf(contract.CodeConversationBusy,
		"SE %s has an open conversation; end it or retry later", seID)
}

// BeginExpired is the answer to a begin whose validitySeconds ran out before
// the SE was free.
func BeginExpired(seID string, waited bool) *contract.Error {
	if waited {
		return contract.Errorf(contract.CodeExpired,
			"SE %s stayed busy beyond the request's validitySeconds; retry later or set a longer validitySeconds", seID)
	}
	return contract.Errorf(contract.CodeExpired, "the begin-conversation request was not processed within its validitySeconds")
}
