package service_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/topology"
	"github.com/tsmhub/tsmhub/services/scriptrouter/domain"
	"github.com/tsmhub/tsmhub/services/scriptrouter/service"
)

func wantFailed(t *testing.T, what string, c events.ScriptCompleted, code contract.Code, message ...string) {
	t.Helper()
	r := c.Response
	if r.Status != contract.StatusFailed || r.Error == nil || r.Error.Code != code {
		t.Fatalf("%s: %s %+v, want Failed %s", what, r.Status, r.Error, code)
	}
	for _, m := range message {
		if !strings.Contains(r.Error.Message, m) {
			t.Errorf("%s: message %q lacks %q", what, r.Error.Message, m)
		}
	}
	if c.TemporaryKeys != nil {
		t.Errorf("%s: temporary keys handed out", what)
	}
}

func TestTemporaryKeysForAnSPWithoutKeyTransportKeyAreRefusedBeforeDelivery(t *testing.T) {
	e := newEnv(t, nil)
	const seID = "0100000000000B01"
	req := procedureStep(seID, "s-noktk", "create-sd",
		&events.TemporaryKeysRequest{SPID: "sp-bank", SecurityDomainAID: bankSD, KeyVersion: 0x30}, createSDCommands(t, bankSD)...)
	req.Request.SPID = "sp-bank"
	e.request(req)
	c := e.completion("s-noktk", seID)
	wantFailed(t, "no key-transport key", c, contract.CodeNotAllowed, "SP sp-bank has no key-transport key registered")
	if got := e.matching(topology.MNODeliver(mno, seID), nil); len(got) != 0 {
		t.Fatalf("%d delivers: the card was touched", len(got))
	}
}

func TestSessionFailuresNameTheStepAndSW(t *testing.T) {
	e := newEnv(t, nil)
	e.registerPay()
	const seID = "0100000000000B02"
	p := newPlayer(e, seID)

	// An SD the card does not have: SELECT fails, INITIALIZE UPDATE never runs.
	req := procedureStep(seID, "s-nosd", "audit", nil, "80F24002024F0000")
	req.Procedure.SecurityDomainAID = "A000000151000099"
	e.request(req)
	p.play(domain.PhaseScriptID("s-nosd", domain.PhaseOpen))
	c := e.completion("s-nosd", seID)
	wantFailed(t, "unknown SD", c, contract.CodeSecureElementError,
		"security domain A000000151000099: SELECT returned SW 6A82", "no command of the script ran")
	if len(c.Response.Responses) != 0 || len(c.Response.Failed) != 0 {
		t.Errorf("session failure reported as script commands: %+v", c.Response)
	}

	// A failing command of the script is reported like an end-to-end one:
	// its index in the script, its SW, the plain (unwrapped) responses before it.
	temp := prePersonalize(t, e, p, false)
	_ = temp
	again := p.runCentral(procedureStep(seID, "s-again", "install-instance", nil, installInstanceCommands(t, paySD, payInst)...))
	wantFailed(t, "instance already there", again, contract.CodeSecureElementError, "command 0 (INS E6) returned SW")
	if f := again.Response.Failed; len(f) != 1 || f[0].Index != 0 || f[0].SW == "" || f[0].Command != installInstanceCommands(t, paySD, payInst)[0] {
		t.Fatalf("failed %+v", f)
	}
}

func TestWrongIssuerMasterKeyFailsAtTheCardCryptogram(t *testing.T) {
	e := newEnv(t, func(c *service.Config) { c.IssuerMasterKey = bytes.Repeat([]byte{0x77}, 16) })
	const seID = "0100000000000B03"
	p := newPlayer(e, seID)
	e.request(procedureStep(seID, "s-wrongkey", "audit", nil, "80F24002024F0000"))
	p.play(domain.PhaseScriptID("s-wrongkey", domain.PhaseOpen))
	c := e.completion("s-wrongkey", seID)
	wantFailed(t, "wrong master key", c, contract.CodeSecureElementError, "card cryptogram", "does not verify")
	if got := e.matching(topology.MNODeliver(mno, seID), forScript(domain.PhaseScriptID("s-wrongkey", domain.PhaseRun))); len(got) != 0 {
		t.Fatalf("the run phase was sent with unverified keys")
	}
}

func TestUnrotatedTemporaryKeysExpire(t *testing.T) {
	e := newEnv(t, func(c *service.Config) { c.TemporaryKeyTTL = time.Second })
	e.registerPay()
	const seID = "0100000000000B04"
	p := newPlayer(e, seID)
	prePersonalize(t, e, p, false)
	bustest.Eventually(t, deadline, "the temporary keys erased after their TTL", func() bool {
		c, ok := e.custodyOf(seID, paySD)
		return ok && c.State == domain.CustodyExpired
	})
	e.request(spScript(seID, "conv-late", "s-late-central", contract.SecuringCentral, "80F24002024F0000"))
	c := e.completion("s-late-central", seID)
	wantFailed(t, "securing central after expiry", c, contract.CodeNotAllowed,
		"erased its copy of the temporary keys of security domain "+paySD, "secure the script end to end")
}
