package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/devstack"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
	"github.com/tsmhub/tsmhub/pkg/keycustody"
	"github.com/tsmhub/tsmhub/pkg/spclient"
)

// demoService is a demo SP's catalog entry (pkg/devstack/demo.go).
type demoService struct {
	spID, sdAID, instanceAID, ktk string
	service                       contract.ServiceID
}

func demoServices(t *testing.T) []demoService {
	t.Helper()
	out := []demoService{
		{spID: "bank1", instanceAID: "A000000555010101", service: contract.ServiceID{Number: "1", Version: "1"}},
		{spID: "transit1", instanceAID: "A000000555010102", service: contract.ServiceID{Number: "2", Version: "1"}},
	}
	for i := range out {
		for _, sp := range devstack.DemoSPs {
			if sp.SPID == out[i].spID {
				out[i].sdAID, out[i].ktk = sp.SDAID, sp.KeyTransportKey
			}
		}
		if out[i].sdAID == "" {
			t.Fatalf("no demo SP %s", out[i].spID)
		}
	}
	return out
}

// enrollBlankSE enrolls an SE without pre-issued SP SDs and waits for its card.
func (e *env) enrollBlankSE(seID, msi, gpVersion string, expiresAt time.Time) {
	e.t.Helper()
	body := map[string]any{"msi": msi, "msiType": "MSISDN", "mno": "mno-a", "seType": "eSE", "configuration": "embedded",
		"profileId": "demo-profile-1", "gpVersion": gpVersion, "javaCardVersion": "3.0.5", "certificationLevel": "EMVCo",
		"expiresAt": expiresAt.UTC().Format(time.RFC3339)}
	if code := e.httpJSON(http.MethodPut, "registry", "/v1/ses/"+seID, body, nil); code >= 300 {
		e.t.Fatalf("enroll %s: HTTP %d", seID, code)
	}
	e.waitCard(seID)
}

// serviceCall sends one of the service operations and decodes its response.
func serviceCall[T any](t *testing.T, c *spclient.Client, op string, req contract.ServiceRequest) *T {
	t.Helper()
	var resp T
	if _, err := c.Call(ctxT(t), op, req, &resp); err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	return &resp
}

// audit runs an audit (GET STATUS through the central SD) and returns the
// card's entries by AID.
func (e *env) audit(seID string) map[string]events.CardEntry {
	e.t.Helper()
	var started struct {
		OperationID string `json:"operationId"`
	}
	if code := e.httpJSON(http.MethodPost, "registry", "/v1/ses/"+seID+"/audit", map[string]any{}, &started); code != http.StatusAccepted || started.OperationID == "" {
		e.t.Fatalf("audit of %s: HTTP %d %+v", seID, code, started)
	}
	var entries map[string]events.CardEntry
	bustest.Eventually(e.t, 60*time.Second, "audit "+started.OperationID+" of "+seID, func() bool {
		var se struct {
			Audit *events.CardAudit `json:"audit"`
		}
		if code := e.httpJSON(http.MethodGet, "registry", "/v1/ses/"+seID, nil, &se); code != 200 || se.Audit == nil ||
			se.Audit.ProcedureID != started.OperationID {
			return false
		}
		entries = map[string]events.CardEntry{}
		for _, en := range se.Audit.Entries {
			entries[strings.ToUpper(en.AID)] = en
		}
		return true
	})
	return entries
}

// lifeCycle reads an audit entry's life-cycle byte (hex).
func lifeCycle(t *testing.T, en events.CardEntry) byte {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(en.LifeCycle, "0x"), 16, 8)
	if err != nil {
		t.Fatalf("life cycle %q of %s is not a hex byte", en.LifeCycle, en.AID)
	}
	return byte(v)
}

// notifications collects an SP's notifications from now on.
type notifications struct {
	t  *testing.T
	ch <-chan spclient.Notification
	// got keeps what arrived, in order.
	got []spclient.Notification
}

func (e *env) notifications(spID string) *notifications {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	ch, err := e.sp(spID).Notifications(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return &notifications{t: e.t, ch: ch}
}

// summary is "kind:state-or-status" of a notification.
func summary(n spclient.Notification) string {
	var body struct {
		State  string `json:"state"`
		Status string `json:"status"`
		SEID   string `json:"seId"`
	}
	_ = json.Unmarshal(n.Body, &body)
	return n.Kind + ":" + body.State + body.Status
}

// await waits until the notifications about seID end with want (in order,
// after the ones already seen).
func (n *notifications) await(seID string, want ...string) {
	n.t.Helper()
	start := len(n.got)
	deadline := time.After(60 * time.Second)
	for len(n.got)-start < len(want) {
		select {
		case m, ok := <-n.ch:
			if !ok {
				n.t.Fatal("notification channel closed")
			}
			var body struct {
				SEID string `json:"seId"`
			}
			_ = json.Unmarshal(m.Body, &body)
			if body.SEID == seID {
				n.got = append(n.got, m)
			}
		case <-deadline:
			n.t.Fatalf("notifications about %s: got %v, want %v after them", seID, summaries(n.got[start:]), want)
		}
	}
	if got := summaries(n.got[start:]); strings.Join(got, " ") != strings.Join(want, " ") {
		n.t.Fatalf("notifications about %s: got %v, want %v", seID, got, want)
	}
}

func summaries(ns []spclient.Notification) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = summary(n)
	}
	return out
}

// spKeys is what an SP ends up holding for its SD on the SE.
type spKeys struct {
	temporary, rotated scp03.StaticKeys
	tempKVN            byte
}

// prePersonalize runs pre-personalize for svc on seID and returns the
// unwrapped temporary keys.
func prePersonalize(t *testing.T, e *env, seID string, svc demoService) scp03.StaticKeys {
	t.Helper()
	resp := serviceCall[contract.PrePersonalizeResponse](t, e.sp(svc.spID), "pre-personalize",
		contract.ServiceRequest{SEID: seID, ServiceID: svc.service})
	if resp.Status != contract.StatusSuccess {
		t.Fatalf("pre-personalize %s for %s: %+v", seID, svc.spID, resp.Error)
	}
	if !strings.EqualFold(resp.SecurityDomainAID, svc.sdAID) || !strings.EqualFold(resp.InstanceAID, svc.instanceAID) ||
		resp.State != contract.StateInstalled || resp.TemporaryKeys == nil ||
		resp.TemporaryKeys.Algorithm != contract.TemporaryKeyAlgorithm || resp.TemporaryKeys.KeyVersion != 0x30 {
		t.Fatalf("pre-personalize %s for %s: %+v (keys %+v)", seID, svc.spID, resp, resp.TemporaryKeys)
	}
	enc, mac, dek, err := keycustody.UnwrapTemporaryKeys(mustHex(t, svc.ktk), resp.TemporaryKeys.Wrapped)
	if err != nil {
		t.Fatalf("unwrap the temporary keys of %s: %v", svc.spID, err)
	}
	if len(enc) != 16 || bytes.Equal(enc, mac) || bytes.Equal(mac, dek) {
		t.Fatalf("temporary keys of %s are not three distinct AES-128 keys", svc.spID)
	}
	return scp03.StaticKeys{ENC: enc, MAC: mac, DEK: dek}
}

// keySession is an SP session opened with explicit static keys.
func keySession(t *testing.T, e *env, svc demoService, seID string, keys scp03.StaticKeys) *spSession {
	t.Helper()
	ch, err := spclient.NewSecureChannel(spclient.SecureChannelConfig{Keys: &keys})
	if err != nil {
		t.Fatal(err)
	}
	return &spSession{t: t, e: e, c: e.sp(svc.spID), seID: seID, sdAID: svc.sdAID, channel: ch}
}

// authenticate runs [SELECT SD, INITIALIZE UPDATE kvn] then EXTERNAL
// AUTHENTICATE (level 33) as the first command of the next script, followed
// by the plain commands given, wrapped; it returns their unwrapped responses.
func (s *spSession) authenticateAndRun(kvn byte, plain ...[]byte) []*spclient.Unwrapped {
	s.t.Helper()
	iu, err := s.channel.InitializeUpdate(kvn)
	if err != nil {
		s.t.Fatal(err)
	}
	r1 := s.send([][]byte{s.selectSD(), iu})
	if _, err := s.channel.ProcessInitializeUpdateResponse(mustHex(s.t, r1.Responses[1])); err != nil {
		s.t.Fatalf("INITIALIZE UPDATE response: %v", err)
	}
	ea, err := s.channel.ExternalAuthenticate(0x33)
	if err != nil {
		s.t.Fatal(err)
	}
	cmds := [][]byte{ea}
	var wrapped []*spclient.Wrapped
	for _, p := range plain {
		w, err := s.channel.Wrap(p)
		if err != nil {
			s.t.Fatal(err)
		}
		wrapped = append(wrapped, w)
		cmds = append(cmds, w.Command)
	}
	r2 := s.send(cmds)
	var out []*spclient.Unwrapped
	for i, w := range wrapped {
		u, err := s.channel.Unwrap(w, mustHex(s.t, r2.Responses[i+1]))
		if err != nil || !u.RMACVerified || u.SW != apdu.SWOK {
			s.t.Fatalf("secured response %d: %+v %v", i, u, err)
		}
		out = append(out, u)
	}
	return out
}

// rotate is the SP's key rotation: an end-to-end SCP03 session with the
// temporary keys and PUT KEY replacing KVN 30 by 31.
func rotate(t *testing.T, e *env, svc demoService, seID string, temp scp03.StaticKeys) scp03.StaticKeys {
	t.Helper()
	s := keySession(t, e, svc, seID, temp)
	s.begin(contract.OperationKeyRotation)
	iu, err := s.channel.InitializeUpdate(0x30)
	if err != nil {
		t.Fatal(err)
	}
	r1 := s.send([][]byte{s.selectSD(), iu})
	if _, err := s.channel.ProcessInitializeUpdateResponse(mustHex(t, r1.Responses[1])); err != nil {
		t.Fatalf("INITIALIZE UPDATE with the temporary keys: %v", err)
	}
	ea, err := s.channel.ExternalAuthenticate(0x33)
	if err != nil {
		t.Fatal(err)
	}
	fresh := scp03.StaticKeys{ENC: randomKey(t), MAC: randomKey(t), DEK: randomKey(t)}
	putKey, expect, err := s.channel.PutKey(0x30, 0x31, fresh)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.channel.Wrap(putKey)
	if err != nil {
		t.Fatal(err)
	}
	r2 := s.send([][]byte{ea, w.Command})
	u, err := s.channel.Unwrap(w, mustHex(t, r2.Responses[1]))
	if err != nil || u.SW != apdu.SWOK || !bytes.Equal(u.Data, expect) {
		t.Fatalf("PUT KEY: %+v %v (want data %X)", u, err, expect)
	}
	s.end(contract.OutcomeSuccess)
	return fresh
}

func randomKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 16)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// personalize is the SP's personalization conversation on its SD with its
// own keys: INSTALL [for personalization] of its instance, then STORE DATA.
func personalize(t *testing.T, e *env, svc demoService, seID string, keys scp03.StaticKeys) {
	t.Helper()
	s := keySession(t, e, svc, seID, keys)
	s.begin(contract.OperationPersonalization)
	inst := mustHex(t, svc.instanceAID)
	installForPerso := append([]byte{0x00, 0x00, byte(len(inst))}, inst...)
	installForPerso = append(installForPerso, 0x00, 0x00, 0x00)
	s.authenticateAndRun(0x31,
		apdu.Command{CLA: 0x80, INS: 0xE6, P1: 0x20, P2: 0x00, Data: installForPerso, Le: -1}.Bytes(),
		mustHex(t, "80E2800004DF010100"))
	s.end(contract.OutcomeSuccess)
}

// TestCentralContentManagementStory is issue 4's acceptance 1, 2 and 4 on one
// SE: pre-personalize for two SPs, each SP unwraps its temporary keys, uses
// them once through securing central, rotates them end to end, personalizes
// its instance and activates its service; GET STATUS through the central SD
// shows both instances in their own SDs; after rotation securing central is
// refused; no SP key value is anywhere in the system's files, streams or logs;
// lost then found suspends and resumes both services with notifications in
// order.
func TestCentralContentManagementStory(t *testing.T) {
	e := startEnv(t)
	const seID = "0100000000000A01"
	e.enrollBlankSE(seID, "+4915100091001", "2.3.1", time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC))
	svcs := demoServices(t)
	notes := map[string]*notifications{}
	for _, svc := range svcs {
		notes[svc.spID] = e.notifications(svc.spID)
	}

	keys := map[string]*spKeys{}
	for _, svc := range svcs {
		temp := prePersonalize(t, e, seID, svc)
		keys[svc.spID] = &spKeys{temporary: temp, tempKVN: 0x30}
		notes[svc.spID].await(seID, "service-state-changed:installed")
	}

	// While the central TSM still holds the temporary keys, it may secure an
	// SP's script itself.
	bank := svcs[0]
	s := newSPSession(t, e, bank.spID, seID)
	s.sdAID = bank.sdAID
	s.begin(contract.OperationOther)
	resp, err := s.c.SendScript(ctxT(t), contract.SendScriptRequest{ConversationID: s.convID, Securing: contract.SecuringCentral,
		Commands: []string{"80F24002024F0000"}})
	if err != nil || resp.Status != contract.StatusSuccess || len(resp.Responses) != 1 || !strings.HasSuffix(resp.Responses[0], "9000") {
		t.Fatalf("securing central with temporary keys: %+v %v", resp, err)
	}
	s.end(contract.OutcomeSuccess)

	for _, svc := range svcs {
		k := keys[svc.spID]
		k.rotated = rotate(t, e, svc, seID, k.temporary)
		personalize(t, e, svc, seID, k.rotated)
		notes[svc.spID].await(seID, "service-state-changed:personalized")
		// The router learnt the new key version from the SP's INITIALIZE
		// UPDATE (the PUT KEY itself was encrypted).
		bustest.Eventually(t, 30*time.Second, "key version 31 of "+svc.sdAID, func() bool {
			d, err := e.sp(svc.spID).GetSEData(ctxT(t), contract.GetSEDataRequest{SEID: seID})
			return err == nil && d.SEData != nil && d.SEData.SecurityDomain != nil && d.SEData.SecurityDomain.KeyVersion == 0x31
		})
		st := serviceCall[contract.ServiceStateResponse](t, e.sp(svc.spID), "activate-service",
			contract.ServiceRequest{SEID: seID, ServiceID: svc.service})
		if st.Status != contract.StatusSuccess || st.State != contract.StateActive {
			t.Fatalf("activate-service for %s: %+v %+v", svc.spID, st, st.Error)
		}
		notes[svc.spID].await(seID, "service-state-changed:active")
		got := serviceCall[contract.ServiceStateResponse](t, e.sp(svc.spID), "get-service-state",
			contract.ServiceRequest{SEID: seID, ServiceID: svc.service})
		if got.Status != contract.StatusSuccess || got.State != contract.StateActive {
			t.Fatalf("get-service-state for %s: %+v", svc.spID, got)
		}
	}

	// GET STATUS through the central SD: both instances, each in its SP's SD.
	card := e.audit(seID)
	for _, svc := range svcs {
		sd, ok := card[svc.sdAID]
		inst, ok2 := card[svc.instanceAID]
		if !ok || !ok2 {
			t.Fatalf("audit lacks %s or %s: %+v", svc.sdAID, svc.instanceAID, card)
		}
		if !strings.EqualFold(inst.SecurityDomain, svc.sdAID) {
			t.Fatalf("instance %s is in SD %s, want %s", svc.instanceAID, inst.SecurityDomain, svc.sdAID)
		}
		if lc := lifeCycle(t, inst); lc&0x80 != 0 || lc&0x07 != 0x07 {
			t.Fatalf("instance %s life cycle %02X: not selectable", svc.instanceAID, lc)
		}
		_ = sd
		// Each SP can select its own instance.
		own := newSPSession(t, e, svc.spID, seID)
		own.sdAID = svc.sdAID
		own.begin(contract.OperationOther)
		own.send([][]byte{apdu.Command{CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x00, Data: mustHex(t, svc.instanceAID), Le: 0}.Bytes()})
		own.end(contract.OutcomeSuccess)
	}

	// Acceptance 2: after rotation securing central is refused.
	s = newSPSession(t, e, bank.spID, seID)
	s.sdAID = bank.sdAID
	s.begin(contract.OperationOther)
	resp, err = s.c.SendScript(ctxT(t), contract.SendScriptRequest{ConversationID: s.convID, Securing: contract.SecuringCentral,
		Commands: []string{"80F24002024F0000"}})
	wantCode(t, err, contract.CodeNotAllowed)
	var f *spclient.FailedError
	if asFailed(err, &f) && !strings.Contains(f.Error(), "belong") {
		t.Errorf("refusal does not say the keys belong to the SP: %v", err)
	}
	s.end(contract.OutcomeSuccess)

	// Acceptance 4: lost, then found.
	lostStatus := e.httpJSON(http.MethodPost, "registry", "/v1/ses/"+seID+"/status", map[string]string{"status": "lost"}, nil)
	if lostStatus != http.StatusAccepted && lostStatus != http.StatusOK {
		t.Fatalf("status lost: HTTP %d", lostStatus)
	}
	for _, svc := range svcs {
		notes[svc.spID].await(seID, "se-status-changed:lost", "service-state-changed:suspended")
	}
	card = e.audit(seID)
	for _, svc := range svcs {
		if lc := lifeCycle(t, card[svc.instanceAID]); lc&0x80 == 0 {
			t.Fatalf("instance %s not locked after lost: %02X", svc.instanceAID, lc)
		}
	}
	if code := e.httpJSON(http.MethodPost, "registry", "/v1/ses/"+seID+"/status", map[string]string{"status": "found"}, nil); code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("status found: HTTP %d", code)
	}
	for _, svc := range svcs {
		notes[svc.spID].await(seID, "se-status-changed:found", "service-state-changed:active")
	}
	card = e.audit(seID)
	for _, svc := range svcs {
		if lc := lifeCycle(t, card[svc.instanceAID]); lc&0x80 != 0 {
			t.Fatalf("instance %s still locked after found: %02X", svc.instanceAID, lc)
		}
	}

	// Acceptance 2: none of the SPs' key values anywhere.
	var secrets [][]byte
	for _, svc := range svcs {
		k := keys[svc.spID]
		secrets = append(secrets, k.temporary.ENC, k.temporary.MAC, k.temporary.DEK, k.rotated.ENC, k.rotated.MAC, k.rotated.DEK,
			mustHex(t, svc.ktk))
	}
	scanForSecrets(t, e, secrets)
}

// scanForSecrets looks for each secret, raw and as hex in both cases, in
// every file under the stack's directory (bbolt files, the JetStream store),
// in every message of every stream, and in the services' logs.
func scanForSecrets(t *testing.T, e *env, secrets [][]byte) {
	t.Helper()
	forms := func(s []byte) [][]byte {
		h := hex.EncodeToString(s)
		return [][]byte{s, []byte(h), []byte(strings.ToUpper(h))}
	}
	check := func(where string, data []byte) {
		for i, s := range secrets {
			for _, f := range forms(s) {
				if bytes.Contains(data, f) {
					t.Errorf("secret %d found in %s", i, where)
				}
			}
		}
	}
	files := 0
	err := filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil // a file removed while walking (compaction)
		}
		files++
		check(path, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs := 0
	ctx := ctxT(t)
	for _, stream := range []string{"TSM_REQ", "TSM_RES", "TSM_REG", "TSM_STEPS", "TSM_DLQ"} {
		st, err := e.js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				if err == jetstream.ErrMsgNotFound {
					continue
				}
				t.Fatal(err)
			}
			msgs++
			var hdr bytes.Buffer
			for k, v := range m.Header {
				fmt.Fprintf(&hdr, "%s: %s\n", k, strings.Join(v, ","))
			}
			check(fmt.Sprintf("%s message %d (%s)", stream, seq, m.Subject), append(hdr.Bytes(), m.Data...))
		}
	}
	check("service logs", []byte(e.logs.String()))
	if files < 5 || msgs < 50 {
		t.Fatalf("scanned only %d files and %d messages", files, msgs)
	}
	t.Logf("no SP key value in %d files, %d stream messages and %d bytes of logs", files, msgs, len(e.logs.String()))
}
