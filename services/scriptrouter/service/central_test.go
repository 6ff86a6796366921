package service_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/gp/command"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
	"github.com/tsmhub/tsmhub/pkg/keycustody"
	"github.com/tsmhub/tsmhub/pkg/topology"
	"github.com/tsmhub/tsmhub/services/scriptrouter/domain"
)

// The central TSM's own secure channel (docs/content-management.md): the
// tests play the MNO adapter and the SE with a real card model
// (pkg/gp/card) manufactured with the issuer master key the router uses by
// default (keycustody.DemoIssuerMasterKey).

const (
	spPay   = "sp-pay"
	paySD   = "A000000555CC01"
	payInst = "A000000555CC0101"
)

// payKTK is sp-pay's key-transport key; the registry record carries it
// wrapped under the (demo) key-exchange key.
var payKTK = bytes.Repeat([]byte{0x5A}, 16)

// registerPay publishes sp-pay (with a key-transport key) and its service.
func (e *env) registerPay() {
	e.t.Helper()
	wrapped, err := keycustody.WrapTransportKey(keycustody.DemoKeyExchangeKey, payKTK)
	if err != nil {
		e.t.Fatal(err)
	}
	e.publishRecord(topology.RegistrySP(spPay), events.TypeRegistrySP,
		events.SPRecord{SPID: spPay, Name: "Pay", SecurityDomainAID: paySD, KeyTransportKeyWrapped: wrapped})
	e.publishRecord(topology.RegistryService("svc-9", "1-0"), events.TypeRegistryService,
		events.ServiceRecord{Number: "svc-9", Version: "1-0", SPID: spPay, ELFAID: hex.EncodeToString(card.GenericELFAID),
			ModuleAID: hex.EncodeToString(card.GenericModuleAID), InstanceAID: payInst})
}

// player is the MNO adapter and the SE of the tests: it runs every
// MNODeliver it is told to on a real card, as the se-simulator does
// (stopping at the first failure unless continueOnError).
type player struct {
	e    *env
	card *card.Card
	seID string
	// central is the AID of the card's central SD (procedure steps).
	central string
}

// newPlayer manufactures an embedded card (the ISD is the central SD).
func newPlayer(e *env, seID string) *player { return newPlayerOf(e, seID, card.Embedded) }

func newPlayerOf(e *env, seID string, cfg card.Config) *player {
	e.t.Helper()
	cin, _ := hex.DecodeString(seID)
	c, err := card.Manufacture(card.ManufactureSpec{CIN: cin, Config: cfg, IssuerMasterKey: keycustody.DemoIssuerMasterKey})
	if err != nil {
		e.t.Fatal(err)
	}
	return &player{e: e, card: c, seID: seID, central: strings.ToUpper(hex.EncodeToString(card.CentralSD(cfg)))}
}

// step is a procedure step through the card's central SD.
func (p *player) step(scriptID, stepName string, tk *events.TemporaryKeysRequest, commands ...string) events.ScriptRequested {
	req := procedureStep(p.seID, scriptID, stepName, tk, commands...)
	req.TargetAID, req.Procedure.SecurityDomainAID = p.central, p.central
	return req
}

// play waits for the MNODeliver of scriptID, runs its commands on the card
// and publishes the SEExecuted.
func (p *player) play(scriptID string) events.MNODeliver {
	p.e.t.Helper()
	m := p.e.waitFor(topology.MNODeliver(mno, p.seID), 1, forScript(scriptID))[0]
	var d events.MNODeliver
	if err := json.Unmarshal(m.Data(), &d); err != nil {
		p.e.t.Fatal(err)
	}
	responses := []string{}
	for _, c := range d.Commands {
		b, err := hex.DecodeString(c)
		if err != nil {
			p.e.t.Fatalf("%s: command %q is not hex", scriptID, c)
		}
		r := p.card.Transmit(b)
		responses = append(responses, strings.ToUpper(hex.EncodeToString(r)))
		sw := uint16(r[len(r)-2])<<8 | uint16(r[len(r)-1])
		if !events.CommandSucceeded(sw) && !d.ContinueOnError {
			break
		}
	}
	p.e.executed(events.SEExecuted{Request: d.Request, ConversationID: d.ConversationID, ScriptID: d.ScriptID, SEID: d.SEID,
		Responses: responses}, "ex-"+scriptID, "")
	return d
}

// completion waits for the ScriptCompleted of scriptID.
func (e *env) completion(scriptID, seID string) events.ScriptCompleted {
	e.t.Helper()
	return decodeCompleted(e.t, e.waitFor(topology.ScriptCompleted(seID), 1, forScript(scriptID))[0])
}

// runCentral requests a script the router secures itself, plays both round
// trips on the card and returns the completion.
func (p *player) runCentral(req events.ScriptRequested) events.ScriptCompleted {
	p.e.t.Helper()
	p.e.request(req)
	p.play(domain.PhaseScriptID(req.ScriptID, domain.PhaseOpen))
	p.play(domain.PhaseScriptID(req.ScriptID, domain.PhaseRun))
	return p.e.completion(req.ScriptID, req.SEID)
}

// mustCmd returns a function that turns a built command into hex.
func mustCmd(t *testing.T) func(apdu.Command, error) string {
	return func(c apdu.Command, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return strings.ToUpper(hex.EncodeToString(c.Bytes()))
	}
}

func aid(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// createSDCommands are the commands of the create-sd step
// (docs/content-management.md): INSTALL [install+selectable] of the SSD
// module as the SP SD, INSTALL [personalization] of it.
func createSDCommands(t *testing.T, sd string) []string {
	return []string{
		mustCmd(t)(command.InstallInstall(command.InstallParams{ELF: card.SSDPackageAID, Module: card.SSDModuleAID,
			Instance: aid(t, sd), Privileges: []byte{0x80, 0x00, 0x00}, Params: command.DefaultInstallParams}, true)),
		mustCmd(t)(command.InstallPersonalization(aid(t, sd))),
	}
}

// installInstanceCommands are the commands of the install-instance step.
func installInstanceCommands(t *testing.T, sd, inst string) []string {
	return []string{
		mustCmd(t)(command.InstallInstall(command.InstallParams{ELF: card.GenericELFAID, Module: card.GenericModuleAID,
			Instance: aid(t, inst), Params: tlv.Encode(0xC9, nil)}, true)),
		mustCmd(t)(command.InstallExtradition(command.ExtraditionParams{SD: aid(t, sd), AID: aid(t, inst)})),
	}
}

var isd = strings.ToUpper(hex.EncodeToString(card.ISDAID))

// procedureStep is a step of a procedure of sp-pay on seID.
func procedureStep(seID, scriptID, step string, tk *events.TemporaryKeysRequest, commands ...string) events.ScriptRequested {
	return events.ScriptRequested{
		Request:        events.RequestRef{SPID: spPay, RequestID: "req-proc-" + seID, Op: "pre-personalize"},
		ConversationID: "proc-" + seID, ScriptID: scriptID, SEID: seID, MNO: mno, TargetAID: isd,
		Commands: commands, Securing: contract.SecuringCentral, MaxAPDUsPerScript: 8, MaxScriptBytes: 512,
		Procedure: &events.ProcedureScript{ProcedureID: "proc-" + seID, Step: step, SecurityDomainAID: isd, TemporaryKeys: tk},
	}
}

// spScript is a script of sp-pay in conversation conv.
func spScript(seID, conv, scriptID, securing string, commands ...string) events.ScriptRequested {
	return events.ScriptRequested{
		Request:        events.RequestRef{SPID: spPay, RequestID: "req-" + scriptID, Op: topology.OpSendScript},
		ConversationID: conv, ScriptID: scriptID, SEID: seID, MNO: mno, TargetAID: paySD,
		Commands: commands, Securing: securing, MaxAPDUsPerScript: 8, MaxScriptBytes: 512,
	}
}

func wantSuccess(t *testing.T, what string, c events.ScriptCompleted, n int) {
	t.Helper()
	r := c.Response
	if r.Status != contract.StatusSuccess || len(r.Responses) != n || len(r.Failed) != 0 {
		t.Fatalf("%s: %s %+v, responses %v, failed %+v", what, r.Status, r.Error, r.Responses, r.Failed)
	}
	for i, resp := range r.Responses {
		if !strings.HasSuffix(resp, "9000") {
			t.Fatalf("%s: response %d = %s", what, i, resp)
		}
	}
}

// custodyOf reads GET /v1/custody/{seId} for one SD.
func (e *env) custodyOf(seID, sd string) (domain.Custody, bool) {
	e.t.Helper()
	var body struct {
		SEID            string           `json:"seId"`
		SecurityDomains []domain.Custody `json:"securityDomains"`
	}
	if code := e.getJSON("/v1/custody/"+seID, &body); code != 200 || body.SEID != seID {
		e.t.Fatalf("GET /v1/custody/%s: %d %+v", seID, code, body)
	}
	for _, c := range body.SecurityDomains {
		if c.SDAID == sd {
			return c, true
		}
	}
	return domain.Custody{}, false
}

// prePersonalize runs create-sd (with temporary keys) and install-instance
// on the card and returns the temporary keys unwrapped with sp-pay's KTK.
func prePersonalize(t *testing.T, e *env, p *player, restartBetweenPhases bool) scp03.StaticKeys {
	t.Helper()
	seID := p.seID
	req := p.step("s-create-"+seID, "create-sd",
		&events.TemporaryKeysRequest{SPID: spPay, SecurityDomainAID: paySD, KeyVersion: 0x30}, createSDCommands(t, paySD)...)
	e.request(req)
	if restartBetweenPhases {
		// The run phase is built, and its responses unwrapped, by restarted
		// routers from the in-flight record in bbolt.
		e.waitFor(topology.MNODeliver(mno, seID), 1, forScript(domain.PhaseScriptID(req.ScriptID, domain.PhaseOpen)))
		e.restart()
	}
	p.play(domain.PhaseScriptID(req.ScriptID, domain.PhaseOpen))
	if restartBetweenPhases {
		e.waitFor(topology.MNODeliver(mno, seID), 1, forScript(domain.PhaseScriptID(req.ScriptID, domain.PhaseRun)))
		e.restart()
	}
	run := p.play(domain.PhaseScriptID(req.ScriptID, domain.PhaseRun))
	if len(run.Commands) != 4 || !strings.HasPrefix(run.Commands[0], "8482330010") {
		t.Fatalf("run phase: %d commands, first %.10s: want EXTERNAL AUTHENTICATE 33, 2 wrapped INSTALLs, PUT KEY", len(run.Commands), run.Commands[0])
	}
	if !strings.HasPrefix(run.Commands[3], "84D80081") {
		t.Fatalf("last command of the run phase %.8s: want the wrapped PUT KEY of a new key set", run.Commands[3])
	}
	c := e.completion(req.ScriptID, seID)
	wantSuccess(t, "create-sd", c, 2)
	tk := c.TemporaryKeys
	if tk == nil || tk.KeyVersion != 0x30 || tk.Algorithm != "AES-128" {
		t.Fatalf("temporary keys %+v", tk)
	}
	enc, mac, dek, err := keycustody.UnwrapTemporaryKeys(payKTK, tk.Wrapped)
	if err != nil || len(enc) != 16 || bytes.Equal(enc, mac) || bytes.Equal(mac, dek) {
		t.Fatalf("temporary keys do not unwrap into three AES-128 keys: %v", err)
	}
	inst := p.runCentral(p.step("s-inst-"+seID, "install-instance", nil, installInstanceCommands(t, paySD, payInst)...))
	wantSuccess(t, "install-instance", inst, 2)
	if inst.TemporaryKeys != nil {
		t.Errorf("install-instance answered temporary keys")
	}
	return scp03.StaticKeys{ENC: enc, MAC: mac, DEK: dek}
}

// openOnCard opens an SCP03 session with the SD directly on the card (the
// SP's view): SELECT, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE.
func openOnCard(t *testing.T, c *card.Card, sd string, kvn byte, keys scp03.StaticKeys) (*scp03.Host, uint16) {
	t.Helper()
	if r := c.Transmit(command.Select(aid(t, sd)).Bytes()); !bytes.HasSuffix(r, []byte{0x90, 0x00}) {
		t.Fatalf("SELECT %s: %X", sd, r)
	}
	h, err := scp03.NewHost(keys, scp03.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	iu, err := h.InitializeUpdate(kvn, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Transmit(iu)
	if sw := uint16(r[len(r)-2])<<8 | uint16(r[len(r)-1]); sw != apdu.SWOK {
		return nil, sw
	}
	if err := h.ProcessInitializeUpdateResponse(r); err != nil {
		t.Fatalf("INITIALIZE UPDATE KVN %02X: %v", kvn, err)
	}
	ea, err := h.ExternalAuthenticate(0x33)
	if err != nil {
		t.Fatal(err)
	}
	r = c.Transmit(ea)
	return h, uint16(r[len(r)-2])<<8 | uint16(r[len(r)-1])
}

func TestPrePersonalizeKeysCentralSecuringAndRotation(t *testing.T) {
	e := newEnv(t, nil)
	e.registerPay()
	const seID = "0100000000000A01"
	p := newPlayer(e, seID)
	temp := prePersonalize(t, e, p, false)

	// GET STATUS through the central SD (an audit step): the SP SD under the
	// ISD, the instance extradited into the SP SD.
	audit := p.runCentral(procedureStep(seID, "s-audit", "audit", nil, "80F24002024F0000"))
	wantSuccess(t, "audit", audit, 1)
	raw, _ := hex.DecodeString(audit.Response.Responses[0])
	entries, err := command.ParseStatusResponse(raw[:len(raw)-2])
	if err != nil {
		t.Fatalf("GET STATUS response: %v", err)
	}
	found := map[string]command.StatusEntry{}
	for _, en := range entries {
		found[strings.ToUpper(hex.EncodeToString(en.AID))] = en
	}
	if sd, ok := found[paySD]; !ok || !bytes.Equal(sd.AssociatedSD, card.ISDAID) {
		t.Fatalf("GET STATUS: SP SD %s %+v (found %d entries)", paySD, sd, len(entries))
	}
	if in, ok := found[payInst]; !ok || strings.ToUpper(hex.EncodeToString(in.AssociatedSD)) != paySD {
		t.Fatalf("GET STATUS: instance %s %+v", payInst, in)
	}

	// The SP's temporary keys open the new SD (KVN 30).
	if _, sw := openOnCard(t, p.card, paySD, 0x30, temp); sw != apdu.SWOK {
		t.Fatalf("EXTERNAL AUTHENTICATE with the temporary keys: SW %04X", sw)
	}
	c, ok := e.custodyOf(seID, paySD)
	if !ok || c.State != domain.CustodyCentral || c.KeyVersion != 0x30 || c.SPID != spPay || c.KeysCreatedAt.IsZero() {
		t.Fatalf("custody %+v", c)
	}

	// Securing central on the SP's SD with the keys the router holds.
	central := p.runCentral(spScript(seID, "conv-central", "s-sp-central", contract.SecuringCentral, "80F24002024F0000"))
	wantSuccess(t, "securing central", central, 1)

	// The SP rotates its keys end to end: [SELECT, INITIALIZE UPDATE] then
	// [EXTERNAL AUTHENTICATE, PUT KEY replacing KVN 30 by 31].
	h, err := scp03.NewHost(temp, scp03.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	iu, _ := h.InitializeUpdate(0x30, nil)
	e.request(spScript(seID, "conv-rot", "s-rot-1", contract.SecuringEndToEnd, "00A4040007"+paySD+"00", strings.ToUpper(hex.EncodeToString(iu))))
	p.play("s-rot-1")
	first := e.completion("s-rot-1", seID)
	wantSuccess(t, "rotation, script 1", first, 2)
	iuResp, _ := hex.DecodeString(first.Response.Responses[1])
	if err := h.ProcessInitializeUpdateResponse(iuResp); err != nil {
		t.Fatal(err)
	}
	ea, _ := h.ExternalAuthenticate(0x33)
	fresh := scp03.StaticKeys{ENC: bytes.Repeat([]byte{1}, 16), MAC: bytes.Repeat([]byte{2}, 16), DEK: bytes.Repeat([]byte{3}, 16)}
	put, _, err := command.PutKey(command.PutKeyParams{ReplaceKVN: 0x30, NewKVN: 0x31, FirstKeyID: 1,
		Keys: [][]byte{fresh.ENC, fresh.MAC, fresh.DEK}, Encrypt: h.EncryptKey})
	if err != nil {
		t.Fatal(err)
	}
	wput, err := h.Wrap(put.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	e.request(spScript(seID, "conv-rot", "s-rot-2", contract.SecuringEndToEnd, strings.ToUpper(hex.EncodeToString(ea)),
		strings.ToUpper(hex.EncodeToString(wput))))
	p.play("s-rot-2")
	second := e.completion("s-rot-2", seID)
	wantSuccess(t, "rotation, script 2", second, 2)
	if len(second.KeysRotated) != 1 || second.KeysRotated[0].SecurityDomainAID != paySD || second.KeysRotated[0].KeyVersion != 0 {
		t.Fatalf("keysRotated %+v, want %s with KVN 0 (hidden by C-DEC)", second.KeysRotated, paySD)
	}
	if c, ok := e.custodyOf(seID, paySD); !ok || c.State != domain.CustodySP {
		t.Fatalf("custody after rotation %+v", c)
	}

	// From now on securing central is refused, before anything reaches the SE.
	e.request(spScript(seID, "conv-after", "s-sp-after", contract.SecuringCentral, "80F24002024F0000"))
	after := e.completion("s-sp-after", seID)
	if r := after.Response; r.Status != contract.StatusFailed || r.Error == nil || r.Error.Code != contract.CodeNotAllowed ||
		!strings.Contains(r.Error.Message, "the keys of security domain "+paySD+" belong to SP "+spPay+" since it replaced them at") ||
		!strings.Contains(r.Error.Message, "secure the script end to end") {
		t.Fatalf("securing central after rotation: %s %+v", r.Status, r.Error)
	}
	if got := e.matching(topology.MNODeliver(mno, seID), forScript(domain.PhaseScriptID("s-sp-after", domain.PhaseOpen))); len(got) != 0 {
		t.Fatalf("a refused script was delivered")
	}
	// The SP's own keys work; the temporary ones are gone from the card.
	if _, sw := openOnCard(t, p.card, paySD, 0x31, fresh); sw != apdu.SWOK {
		t.Fatalf("the SP's new keys: SW %04X", sw)
	}

	// No key value in the router's bbolt file: neither the temporary keys
	// nor the issuer keys of the card's ISD, raw or in hex.
	e.svc.Stop(t)
	db, err := os.ReadFile(filepath.Join(e.cfg.Kit.DataDir, "scriptrouter.db"))
	if err != nil {
		t.Fatal(err)
	}
	cin, _ := hex.DecodeString(seID)
	ienc, imac, idek, err := card.DeriveSCP03Keys(keycustody.DemoIssuerMasterKey, card.KDDFromCIN(cin))
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string][]byte{"temporary ENC": temp.ENC, "temporary MAC": temp.MAC, "temporary DEK": temp.DEK,
		"ISD ENC": ienc, "ISD MAC": imac, "ISD DEK": idek, "SP KTK": payKTK} {
		for _, form := range [][]byte{k, []byte(hex.EncodeToString(k)), []byte(strings.ToUpper(hex.EncodeToString(k)))} {
			if bytes.Contains(db, form) {
				t.Errorf("the router's bbolt file contains the %s", name)
			}
		}
	}
}

func TestProcedureResumesAfterARestartBetweenPhases(t *testing.T) {
	e := newEnv(t, nil)
	e.registerPay()
	// A UICC: the central SD is not the ISD.
	p := newPlayerOf(e, "0100000000000A02", card.UICC)
	temp := prePersonalize(t, e, p, true)
	if _, sw := openOnCard(t, p.card, paySD, 0x30, temp); sw != apdu.SWOK {
		t.Fatalf("EXTERNAL AUTHENTICATE with the temporary keys: SW %04X", sw)
	}
}
