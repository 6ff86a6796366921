package domain

import (
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func validBegin() BeginRequest {
	return BeginRequest{
		Request: events.RequestRef{SPID: "bank-a", RequestID: "r1", Op: "begin-conversation"},
		SEID:    "0102030405060708", MNOID: "mno-1", OTACarrier: CarrierHTTPS, TargetAID: "A0000005550101",
		RequestedOperation: contract.OperationKeyRotation,
	}
}

func TestLimitsFor(t *testing.T) {
	cases := []struct {
		name    string
		p       Policy
		carrier string
		mnoMax  int
		want    Limits
	}{
		{"defaults over https", Policy{}, CarrierHTTPS, 0, Limits{16, 32, 8192}},
		{"defaults over sms", Policy{}, CarrierSMS, 0, Limits{16, 32, 1024}},
		{"the MNO's APDU limit wins", Policy{DefaultMaxAPDUsPerScript: 10}, CarrierHTTPS, 20, Limits{16, 20, 8192}},
		{"configured fallback APDU limit", Policy{DefaultMaxAPDUsPerScript: 10}, CarrierSMS, 0, Limits{16, 10, 1024}},
		{"configured script bytes override every carrier", Policy{MaxScripts: 3, MaxScriptBytes: 500}, CarrierHTTPS, 0, Limits{3, 32, 500}},
	}
	for _, c := range cases {
		if got := c.p.LimitsFor(c.carrier, c.mnoMax); got != c.want {
			t.Errorf("%s: LimitsFor = %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestBeginValidate(t *testing.T) {
	if err := validBegin().Validate(); err != nil {
		t.Fatalf("valid begin refused: %v", err)
	}
	cases := []struct {
		mutate func(*BeginRequest)
		code   contract.Code
		want   string
	}{
		{func(b *BeginRequest) { b.RequestedOperation = "rotate" }, contract.CodeInvalidArgument, "requestedOperation"},
		{func(b *BeginRequest) { b.ScriptFormat = "zip" }, contract.CodeInvalidArgument, "scriptFormat"},
		{func(b *BeginRequest) { b.TargetAID = "A000" }, contract.CodeInvalidArgument, "targetAid"},
		{func(b *BeginRequest) { b.TargetAID = "A0000005550G" }, contract.CodeInvalidArgument, "targetAid"},
		{func(b *BeginRequest) { b.MNOID = "" }, contract.CodeInternalError, "no MNO"},
		{func(b *BeginRequest) { b.OTACarrier = "pigeon" }, contract.CodeInternalError, "OTA carrier"},
	}
	for _, c := range cases {
		b := validBegin()
		c.mutate(&b)
		err := b.Validate()
		if err == nil || err.Code != c.code || !strings.Contains(err.Message, c.want) {
			t.Errorf("Validate(%+v) = %v, want %s mentioning %q", b, err, c.code, c.want)
		}
	}
}

func TestOpenSetsLimitsFormatAndExpiry(t *testing.T) {
	b := validBegin()
	b.OTACarrier = CarrierSMS
	b.MNOMaxAPDUsPerScript = 8
	c := Open("cv-1", b, Policy{TTL: time.Minute}, t0)
	if c.State != StateOpen || c.SPID != "bank-a" || c.SEID != b.SEID || c.MNOID != "mno-1" {
		t.Fatalf("opened %+v", c)
	}
	if c.ScriptFormat != contract.ScriptFormatExpanded {
		t.Errorf("script format %q, want the default expanded", c.ScriptFormat)
	}
	if c.Limits != (Limits{16, 8, 1024}) {
		t.Errorf("limits %+v", c.Limits)
	}
	if !c.ExpiresAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("expires at %v", c.ExpiresAt)
	}
	if !c.Occupies(t0.Add(59*time.Second)) || c.Occupies(t0.Add(time.Minute)) {
		t.Error("a conversation occupies its SE until, and not at, its expiry")
	}
}

func TestScriptsOneAtATimeUpToTheLimit(t *testing.T) {
	c := Open("cv-1", validBegin(), Policy{MaxScripts: 2}, t0)
	req := events.RequestRef{SPID: "bank-a", RequestID: "s1", Op: "send-script"}
	if err := c.StartScript("sc-1", req, t0); err != nil {
		t.Fatal(err)
	}
	if err := c.StartScript("sc-2", req, t0); err == nil || err.Code != contract.CodeConversationBusy ||
		!strings.Contains(err.Message, "cv-1") {
		t.Fatalf("second script while one runs: %v, want CONVERSATION_BUSY naming the conversation", err)
	}
	if err := c.End(contract.OutcomeSuccess, t0); err == nil || err.Code != contract.CodeConversationBusy {
		t.Fatalf("end while a script runs: %v, want CONVERSATION_BUSY", err)
	}
	if r := c.CompleteScript("sc-other"); r != nil || c.Running == nil || c.ScriptsRun != 0 {
		t.Fatal("completing another script must change nothing")
	}
	if r := c.CompleteScript("sc-1"); r == nil || r.Request != req || c.Running != nil || c.ScriptsRun != 1 {
		t.Fatalf("complete: %+v, conversation %+v", r, c)
	}
	if r := c.CompleteScript("sc-1"); r != nil || c.ScriptsRun != 1 {
		t.Fatal("a duplicate completion must not count twice")
	}
	if err := c.StartScript("sc-2", req, t0); err != nil {
		t.Fatal(err)
	}
	c.CompleteScript("sc-2")
	if err := c.StartScript("sc-3", req, t0); err == nil || err.Code != contract.CodeNotAllowed ||
		!strings.Contains(err.Message, "maximum of 2") {
		t.Fatalf("third script with maxScripts 2: %v, want NOT_ALLOWED", err)
	}
	if !c.ExpiresAt.Equal(t0.Add(DefaultTTL)) {
		t.Error("scripts must not extend the conversation")
	}
}

func TestCheckOpenFor(t *testing.T) {
	c := Open("cv-1", validBegin(), Policy{TTL: time.Minute}, t0)
	if err := c.CheckOpenFor("bank-a", t0); err != nil {
		t.Fatalf("open conversation refused: %v", err)
	}
	// Another SP is told the conversation is unknown: its existence must not leak.
	err := c.CheckOpenFor("bank-b", t0)
	if err == nil || err.Code != contract.CodeConversationNotOpen || !strings.Contains(err.Message, "unknown") {
		t.Fatalf("other SP: %v", err)
	}
	if err := (*Conversation)(nil).CheckOpenFor("bank-a", t0); err == nil || !strings.Contains(err.Message, "unknown") {
		t.Fatalf("nil conversation: %v", err)
	}
	if err := c.CheckOpenFor("bank-a", t0.Add(time.Minute)); err == nil || !strings.Contains(err.Message, "expired at") {
		t.Fatalf("past expiry: %v", err)
	}
	if err := c.End("maybe", t0); err == nil || err.Code != contract.CodeInvalidArgument {
		t.Fatalf("bad outcome: %v", err)
	}
	if err := c.End(contract.OutcomeFailure, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckOpenFor("bank-a", t0.Add(2*time.Second)); err == nil ||
		!strings.Contains(err.Message, "ended at 2030-01-02T03:04:06Z") {
		t.Fatalf("ended: %v", err)
	}
	if c.Expire(t0.Add(time.Hour)) {
		t.Fatal("an ended conversation cannot expire")
	}
}

func TestExpireIsIdempotent(t *testing.T) {
	c := Open("cv-1", validBegin(), Policy{TTL: time.Minute}, t0)
	if c.Expire(t0.Add(30 * time.Second)) {
		t.Fatal("expired before its time")
	}
	if !c.Expire(t0.Add(time.Minute)) || c.State != StateExpired {
		t.Fatalf("not expired at its time: %+v", c)
	}
	if c.Expire(t0.Add(2 * time.Minute)) {
		t.Fatal("expired twice")
	}
	if err := c.CheckOpenFor("bank-a", t0.Add(2*time.Minute)); err == nil || !strings.Contains(err.Message, "expired at") {
		t.Fatalf("expired: %v", err)
	}
}

func TestBeginExpiredAt(t *testing.T) {
	b := validBegin()
	if b.ExpiredAt(t0) {
		t.Fatal("a begin without validitySeconds never expires")
	}
	b.ValidUntil = t0
	if !b.ExpiredAt(t0) || b.ExpiredAt(t0.Add(-time.Nanosecond)) {
		t.Fatal("a begin expires at its ValidUntil")
	}
}
