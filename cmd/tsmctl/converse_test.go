package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

const (
	testSPID     = "bank-a"
	testSDAID    = "A000000555AA01"
	testSEID     = "0102030405060708"
	spMasterHex  = "000102030405060708090A0B0C0D0E0F"
	issuerMaster = "F0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF"
)

// fakeTSM answers begin-conversation, send-script and end-conversation as
// the central TSM would, running the scripts on a simulated card.
type fakeTSM struct {
	t    *testing.T
	js   jetstream.JetStream
	card *card.Card

	mu              sync.Mutex
	ops             []string
	outcomes        []string
	serviceRequests []contract.ServiceRequest

	// busy is held while a request is handled, so that the test's cleanup
	// waits for a response publish in flight before the connection closes.
	busy    sync.Mutex
	stopped bool
}

func startFakeTSM(t *testing.T, js jetstream.JetStream) *fakeTSM {
	t.Helper()
	sd, _ := apdu.DecodeHex(testSDAID)
	cin, _ := apdu.DecodeHex(testSEID)
	c, err := card.Manufacture(card.ManufactureSpec{CIN: cin, Config: card.Embedded, IssuerMasterKey: mustHex(t, issuerMaster),
		PreIssuedSPDomains: []card.PreIssuedSD{{AID: sd, MasterKey: mustHex(t, spMasterHex)}}})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeTSM{t: t, js: js, card: c}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, topology.StreamRequests.Name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(f.handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Stop()
		f.busy.Lock()
		f.stopped = true
		f.busy.Unlock()
	})
	return f
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := apdu.DecodeHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fakeTSM) handle(m jetstream.Msg) {
	f.busy.Lock()
	defer f.busy.Unlock()
	if f.stopped {
		return
	}
	spID, _, op, _ := topology.ParseSPSubject(m.Subject())
	ev, err := bus.Decode(m.Headers(), m.Data())
	if err != nil {
		f.t.Errorf("request: %v", err)
		return
	}
	f.mu.Lock()
	f.ops = append(f.ops, op)
	f.mu.Unlock()
	var body any
	switch op {
	case topology.OpBeginConversation:
		exp := time.Now().Add(time.Hour).UTC()
		body = contract.BeginConversationResponse{Result: contract.Success(), ConversationID: "conv-1", OTACarrier: "https",
			MaxScripts: 10, MaxAPDUsPerScript: 20, MaxScriptBytes: 4096, ScriptFormat: "expanded", ExpiresAt: &exp}
	case topology.OpSendScript:
		var req contract.SendScriptRequest
		_ = json.Unmarshal(ev.Data(), &req)
		resp := contract.SendScriptResponse{Result: contract.Success(), ConversationID: req.ConversationID,
			Responses: []string{}, Failed: []contract.ScriptFailure{}}
		for i, cmd := range req.Commands {
			b, _ := apdu.DecodeHex(cmd)
			r := f.card.Transmit(b)
			resp.Responses = append(resp.Responses, strings.ToUpper(upper(r)))
			sw := uint16(r[len(r)-2])<<8 | uint16(r[len(r)-1])
			if !events.CommandSucceeded(sw) {
				resp.Failed = append(resp.Failed, contract.ScriptFailure{Index: i, Command: cmd,
					SW: strings.ToUpper(upper(r[len(r)-2:])), Reason: apdu.StatusText(sw)})
				resp.Result = contract.Failure(contract.Errorf(contract.CodeSecureElementError, "command %d failed", i))
				if !req.ContinueOnError {
					break
				}
			}
		}
		body = resp
	case topology.OpEndConversation:
		var req contract.EndConversationRequest
		_ = json.Unmarshal(ev.Data(), &req)
		f.mu.Lock()
		f.outcomes = append(f.outcomes, req.Outcome)
		f.mu.Unlock()
		body = contract.EndConversationResponse{Result: contract.Success(), ConversationID: req.ConversationID, Outcome: req.Outcome}
	case topology.OpPrePersonalize, topology.OpActivateService, topology.OpSuspendService, topology.OpResumeService,
		topology.OpTerminateService, topology.OpGetServiceState:
		var req contract.ServiceRequest
		_ = json.Unmarshal(ev.Data(), &req)
		f.mu.Lock()
		f.serviceRequests = append(f.serviceRequests, req)
		f.mu.Unlock()
		body = f.serviceResponse(op, req)
	default:
		body = contract.FailureBody{Result: contract.Failure(contract.Errorf(contract.CodeInvalidArgument, "unexpected %s", op))}
	}
	out, err := bustest.Event{Source: topology.CentralSource, Type: "tsm." + op + topology.ResponseTypeSuffix, Subject: "conv-1",
		Correlation: ev.ID(), Data: body}.Msg(topology.SPResponse(spID, op))
	if err != nil {
		f.t.Error(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.js.PublishMsg(ctx, out); err != nil {
		f.t.Errorf("publish %s response: %v", op, err)
	}
}

func (f *fakeTSM) recorded() (ops, outcomes []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ops...), append([]string(nil), f.outcomes...)
}

func writeScript(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// The README walkthrough against a fake central TSM with a simulated card:
// INITIALIZE UPDATE in script 1; EXTERNAL AUTHENTICATE, secured commands and a
// key rotation in script 2.
func TestConverseWalkthrough(t *testing.T) {
	url, js := startBus(t)
	f := startFakeTSM(t, js)
	dir := t.TempDir()
	s1 := writeScript(t, dir, "1-init.txt", "# open the SP SD\nselect "+testSDAID+"\ninitialize-update 30\n")
	s2 := writeScript(t, dir, "2-rotate.txt", "external-authenticate 33\nget-status 40\nstore-data DF0103010203\n"+
		"put-key 30 31 "+keyA+":"+keyB+":"+keyC+"\n")
	code, out, errOut := runCLI(t, "--nats", url, "--sp", testSPID, "converse", "--se", testSEID, "--target-aid", testSDAID,
		"--operation", "key-rotation", "--sd-master-key", spMasterHex, "--script", s1, "--script", s2)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"conversation conv-1", "script 1/2", "script 2/2", "card cryptogram ok", "session open at level 33",
		"R-MAC ok, decrypted", "key check values ok", "SW 9000 (success)", "conversation conv-1 ended: success"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, k := range []string{keyA, keyB, keyC, spMasterHex} {
		if strings.Contains(out+errOut, k) {
			t.Error("a key was printed")
		}
	}
	ops, outcomes := f.recorded()
	if strings.Join(ops, ",") != "begin-conversation,send-script,send-script,end-conversation" || strings.Join(outcomes, ",") != "success" {
		t.Errorf("requests %v outcomes %v", ops, outcomes)
	}

	// The rotated keys open the next conversation, with --keys and --json.
	s3 := writeScript(t, dir, "3-check.txt", "select "+testSDAID+"\ninitialize-update 31\n")
	code, out, errOut = runCLI(t, "--nats", url, "--sp", testSPID, "--json", "converse", "--se", testSEID, "--target-aid", testSDAID,
		"--operation", "other", "--keys", keyA+":"+keyB+":"+keyC, "--script", s3)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("--json: %d lines, want 3 (begin, send-script, end):\n%s", len(lines), out)
	}
	for _, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil || v["status"] != "Executed-Success" {
			t.Errorf("--json line %q: %v", l, err)
		}
	}
}

// A failing command fails the run: exit 1 and the conversation ends with
// outcome failure; later scripts are not sent.
func TestConverseFailure(t *testing.T) {
	url, js := startBus(t)
	f := startFakeTSM(t, js)
	dir := t.TempDir()
	s1 := writeScript(t, dir, "a.txt", "select "+testSDAID+"\n80F28002024F0000\n80CA006600\n")
	s2 := writeScript(t, dir, "b.txt", "80CA006600\n")
	code, out, errOut := runCLI(t, "--nats", url, "--sp", testSPID, "converse", "--se", testSEID, "--target-aid", testSDAID,
		"--operation", "other", "--script", s1, "--script", s2)
	if code != exitFailed {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "FAILED") || !strings.Contains(out, "not executed") || !strings.Contains(out, "ended: failure") {
		t.Errorf("output:\n%s", out)
	}
	if !strings.Contains(errOut, "SECURE_ELEMENT_ERROR") {
		t.Errorf("stderr:\n%s", errOut)
	}
	ops, outcomes := f.recorded()
	if strings.Join(ops, ",") != "begin-conversation,send-script,end-conversation" || strings.Join(outcomes, ",") != "failure" {
		t.Errorf("requests %v outcomes %v", ops, outcomes)
	}
}

// Mistakes in flags or scripts are reported before anything is sent.
func TestConverseChecksBeforeSending(t *testing.T) {
	url, js := startBus(t)
	f := startFakeTSM(t, js)
	dir := t.TempDir()
	same := writeScript(t, dir, "same.txt", "select "+testSDAID+"\ninitialize-update\nexternal-authenticate\n")
	typo := writeScript(t, dir, "typo.txt", "selekt "+testSDAID+"\n")
	for name, args := range map[string][]string{
		"EA in the IU script": {"--sd-master-key", spMasterHex, "--script", same},
		"no keys":             {"--script", same},
		"typo":                {"--script", typo},
		"missing file":        {"--script", filepath.Join(dir, "nope.txt")},
		"bad level":           {"--level", "07", "--script", typo},
		"both keys":           {"--sd-master-key", spMasterHex, "--keys", keyA + ":" + keyB + ":" + keyC, "--script", same},
	} {
		base := []string{"--nats", url, "--sp", testSPID, "converse", "--se", testSEID, "--target-aid", testSDAID, "--operation", "other"}
		code, _, errOut := runCLI(t, append(base, args...)...)
		if code != exitUsage || errOut == "" {
			t.Errorf("%s: exit %d, stderr %q", name, code, errOut)
		}
		if strings.Contains(errOut, spMasterHex) || strings.Contains(errOut, keyA) {
			t.Errorf("%s: key in the error", name)
		}
	}
	code, _, errOut := runCLI(t, "--nats", url, "--sp", testSPID, "converse", "--se", testSEID, "--target-aid", testSDAID,
		"--operation", "other", "--sd-master-key", spMasterHex, "--script", same)
	if !strings.Contains(errOut, "same.txt:3") || code != exitUsage {
		t.Errorf("error does not name the line: %s", errOut)
	}
	if ops, _ := f.recorded(); len(ops) != 0 {
		t.Errorf("requests were sent: %v", ops)
	}
}

func TestSEIDAndCallCommands(t *testing.T) {
	url, js := startBus(t)
	startFakeTSM(t, js)
	// The fake answers get-se-id with INVALID_ARGUMENT: exit 1 with the code.
	code, _, errOut := runCLI(t, "--nats", url, "--sp", testSPID, "se-id", "--msi", "+4915112345678")
	if code != exitFailed || !strings.Contains(errOut, "INVALID_ARGUMENT") {
		t.Errorf("se-id: exit %d, stderr %q", code, errOut)
	}
	code, out, _ := runCLI(t, "--nats", url, "--sp", testSPID, "call", "end-conversation", "--data", `{"conversationId":"c9","outcome":"success"}`)
	if code != exitOK || !strings.Contains(out, `"outcome": "success"`) {
		t.Errorf("call: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCLI(t, "--nats", url, "se-id", "--msi", "1"); code != exitFailed || !strings.Contains(errOut, "--sp") {
		t.Errorf("no SP: exit %d %q", code, errOut)
	}
	if code, _, _ := runCLI(t, "no-such-command"); code != exitUsage {
		t.Errorf("unknown command: exit %d", code)
	}
	if code, out, _ := runCLI(t, "help", "converse"); code != exitOK || !strings.Contains(out, "initialize-update") {
		t.Errorf("help converse: exit %d\n%s", code, out)
	}
}

func TestUnwrapTemporaryKeys(t *testing.T) {
	ktk := mustHex(t, "000102030405060708090A0B0C0D0E0F")
	plain := mustHex(t, keyA+keyB+keyC)
	wrapped, err := gpcrypto.AESKeyWrap(ktk, plain)
	if err != nil {
		t.Fatal(err)
	}
	k, err := unwrapTemporaryKeys(upper(wrapped), upper(ktk))
	if err != nil {
		t.Fatal(err)
	}
	if upper(k.ENC) != keyA || upper(k.MAC) != keyB || upper(k.DEK) != keyC {
		t.Errorf("keys not split ENC||MAC||DEK")
	}
	_, err = unwrapTemporaryKeys(upper(wrapped), "0F0E0D0C0B0A09080706050403020100")
	if err == nil || strings.Contains(err.Error(), keyA) {
		t.Errorf("wrong KTK: %v", err)
	}
	t.Setenv("TSM_KTK", "")
	if _, err := unwrapTemporaryKeys(upper(wrapped), ""); err == nil {
		t.Error("no KTK accepted")
	}
	o := &converseOptions{wrappedKeys: upper(wrapped), ktk: upper(ktk), masterKey: spMasterHex}
	if _, _, err := o.channelConfig(); err == nil {
		t.Error("--wrapped-keys with --sd-master-key accepted")
	}
}
