package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/keycustody"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

const (
	// testKTK is the SP's key-transport key of these tests.
	testKTK = "101112131415161718191A1B1C1D1E1F"
	// testNewSD is the SD the fake pre-personalize "creates": the fake card
	// gets it with keyA/keyB/keyC as key set 30, the temporary keys.
	testNewSD = "A000000555AA05"
	testInst  = "A000000555010101"
	// keyD..keyF are the SP's own keys of the key rotation.
	keyD = "707172737475767778797A7B7C7D7E7F"
	keyE = "808182838485868788898A8B8C8D8E8F"
	keyF = "909192939495969798999A9B9C9D9E9F"
)

// serviceResponse answers the service operations as the central TSM would:
// pre-personalize with the temporary keys keyA/keyB/keyC wrapped under
// testKTK (and an SD on the fake card that has them), the others with a state.
func (f *fakeTSM) serviceResponse(op string, req contract.ServiceRequest) any {
	svc := req.ServiceID
	if req.ServiceID.Number == "404" {
		return contract.FailureBody{Result: contract.Failure(contract.Errorf(contract.CodeNotFound, "no service 404/%s in the catalog", svc.Version))}
	}
	switch op {
	case topology.OpPrePersonalize:
		// The SD exists after the first pre-personalize: a second one
		// gets a duplicate error, which is the card's business.
		keys := []card.Key{{ID: 1, Type: 0x88, Value: mustHex(f.t, keyA)}, {ID: 2, Type: 0x88, Value: mustHex(f.t, keyB)},
			{ID: 3, Type: 0x88, Value: mustHex(f.t, keyC)}}
		_ = f.card.AddSecurityDomain(mustHex(f.t, testNewSD), card.CentralSD(card.Embedded), card.Privileges{}, nil,
			card.KeySet{KVN: 0x30, Keys: keys})
		w, err := keycustody.WrapTemporaryKeys(mustHex(f.t, testKTK), mustHex(f.t, keyA), mustHex(f.t, keyB), mustHex(f.t, keyC))
		if err != nil {
			f.t.Error(err)
		}
		return contract.PrePersonalizeResponse{Result: contract.Success(), SEID: req.SEID, ServiceID: &svc,
			SecurityDomainAID: testNewSD, InstanceAID: testInst, State: contract.StateInstalled,
			TemporaryKeys: &contract.TemporaryKeys{KeyVersion: 0x30, Algorithm: contract.TemporaryKeyAlgorithm, Wrapped: w}}
	case topology.OpSuspendService:
		return contract.ServiceStateResponse{Result: contract.Success(), SEID: req.SEID, ServiceID: &svc, InstanceAID: testInst,
			State: contract.StateSuspended, Reason: "suspended by the SP"}
	}
	return contract.ServiceStateResponse{Result: contract.Success(), SEID: req.SEID, ServiceID: &svc, InstanceAID: testInst,
		State: contract.StateActive}
}

func TestParseServiceID(t *testing.T) {
	for in, want := range map[string]contract.ServiceID{"1/1": {Number: "1", Version: "1"}, "pay_2:1-2": {Number: "pay_2", Version: "1-2"}} {
		if got, err := parseServiceID(in); err != nil || got != want {
			t.Errorf("%q: %+v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "1", "1/", "/1", "1.2/1", "1/1/1", "a b/1"} {
		if _, err := parseServiceID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestPrePersonalizeFlagsCheckedBeforeSending(t *testing.T) {
	t.Setenv("TSM_KTK", "")
	dir := t.TempDir()
	ktkFile := filepath.Join(dir, "ktk")
	if err := os.WriteFile(ktkFile, []byte(testKTK+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := serviceTarget{se: "0100000000000005", service: "1/1"}
	o := &prePersonalizeOptions{target: ok, ktkFile: ktkFile}
	req, ktk, err := o.prepare()
	if err != nil || upper(ktk) != testKTK || req.SEID != "0100000000000005" || req.ServiceID.Number != "1" || req.ServiceQualifier != nil {
		t.Fatalf("prepare: %+v %v", req, err)
	}
	o = &prePersonalizeOptions{target: serviceTarget{se: "0100000000000005", service: "1/1", spName: "Demo Bank", prn: "7"}}
	if req, ktk, err := o.prepare(); err != nil || ktk != nil || req.ServiceQualifier == nil || req.ServiceQualifier.PRN != "7" {
		t.Fatalf("qualifier: %+v %v", req, err)
	}
	shortKTK := "0011223344556677889900AABBCCDD"
	for name, o := range map[string]*prePersonalizeOptions{
		"no SE":                {target: serviceTarget{service: "1/1"}},
		"no service":           {target: serviceTarget{se: "0100000000000005"}},
		"both KTKs":            {target: ok, ktk: testKTK, ktkFile: ktkFile},
		"short KTK":            {target: ok, ktk: shortKTK},
		"missing KTK file":     {target: ok, ktkFile: filepath.Join(dir, "nope")},
		"plain without out":    {target: ok, ktk: testKTK, plainKeys: true},
		"plain without KTK":    {target: ok, keysOut: filepath.Join(dir, "k.json"), plainKeys: true},
		"service without vers": {target: serviceTarget{se: "0100000000000005", service: "1"}},
	} {
		_, _, err := o.prepare()
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), shortKTK) || strings.Contains(err.Error(), testKTK) {
			t.Errorf("%s: the key is in the error: %v", name, err)
		}
	}
}

// pre-personalize prints the response and the KCVs (never the keys), writes
// a keys file, and converse --keys-file rotates the temporary keys with it:
// the output of one feeds the other.
func TestPrePersonalizeFeedsConverse(t *testing.T) {
	t.Setenv("TSM_KTK", "")
	url, js := startBus(t)
	f := startFakeTSM(t, js)
	dir := t.TempDir()
	ktkFile := filepath.Join(dir, "bank.ktk")
	if err := os.WriteFile(ktkFile, []byte(testKTK), 0o600); err != nil {
		t.Fatal(err)
	}
	keysOut := filepath.Join(dir, "se.keys.json")
	code, out, errOut := runCLI(t, "--nats", url, "pre-personalize", "--sp", testSPID, "--se", testSEID, "--service", "1/1",
		"--ktk-file", ktkFile, "--keys-out", keysOut)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	var kcvs []string
	for _, k := range []string{keyA, keyB, keyC} {
		kcv, _ := gpcrypto.AESKCV(mustHex(t, k))
		kcvs = append(kcvs, upper(kcv))
	}
	for _, want := range []string{`"securityDomainAid": "` + testNewSD + `"`, `"wrapped":`, "KVN 30", "AES-128",
		"KCV ENC " + kcvs[0] + " MAC " + kcvs[1] + " DEK " + kcvs[2], "keys file " + keysOut} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, k := range []string{keyA, keyB, keyC, testKTK} {
		if strings.Contains(out+errOut, k) {
			t.Errorf("a key was printed:\n%s", out)
		}
	}
	st, err := os.Stat(keysOut)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keys file: %v %v", st, err)
	}
	b, _ := os.ReadFile(keysOut)
	var kf keysFile
	if err := json.Unmarshal(b, &kf); err != nil || kf.SEID != testSEID || kf.SPID != testSPID || kf.SecurityDomainAID != testNewSD ||
		kf.KeyVersion != 0x30 || kf.Wrapped == "" || kf.Keys != "" || kf.InstanceAID != testInst {
		t.Fatalf("keys file %s: %v", b, err)
	}
	for _, k := range []string{keyA, keyB, keyC} {
		if strings.Contains(string(b), k) {
			t.Fatal("the wrapped keys file holds a key in clear")
		}
	}

	// converse takes SE, SD, KVN and the keys from the file and rotates them.
	s1 := writeScript(t, dir, "1-init.txt", "select "+testNewSD+"\ninitialize-update\n")
	s2 := writeScript(t, dir, "2-rotate.txt", "external-authenticate 33\nput-key 30 31 "+keyD+":"+keyE+":"+keyF+"\n")
	code, out, errOut = runCLI(t, "--nats", url, "--sp", testSPID, "converse", "--keys-file", keysOut, "--ktk-file", ktkFile,
		"--operation", "key-rotation", "--script", s1, "--script", s2)
	if code != exitOK {
		t.Fatalf("converse: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"card cryptogram ok: KVN 30", "session open at level 33", "key check values ok", "ended: success"} {
		if !strings.Contains(out, want) {
			t.Errorf("converse output lacks %q:\n%s", want, out)
		}
	}
	// Without the key-transport key the wrapped file is refused up front.
	code, _, errOut = runCLI(t, "--nats", url, "--sp", testSPID, "converse", "--keys-file", keysOut,
		"--operation", "key-rotation", "--script", s1)
	if code != exitUsage || !strings.Contains(errOut, "key-transport key") {
		t.Errorf("no KTK: exit %d %s", code, errOut)
	}
	// A keys file of another SE is refused.
	code, _, errOut = runCLI(t, "--nats", url, "--sp", testSPID, "converse", "--keys-file", keysOut, "--ktk", testKTK,
		"--se", "0100000000000001", "--operation", "key-rotation", "--script", s1)
	if code != exitUsage || !strings.Contains(errOut, "holds the keys of an SD on SE "+testSEID) {
		t.Errorf("other SE: exit %d %s", code, errOut)
	}

	// --plain-keys writes the keys in clear; converse needs no KTK then.
	plainOut := filepath.Join(dir, "plain.keys.json")
	code, out, errOut = runCLI(t, "--nats", url, "--sp", testSPID, "--json", "pre-personalize", "--se", testSEID, "--service", "1/1",
		"--ktk", testKTK, "--keys-out", plainOut, "--plain-keys")
	if code != exitOK || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("--json: exit %d, want one line\n%s\n%s", code, out, errOut)
	}
	pk, err := loadKeysFile(plainOut)
	if err != nil || pk.Keys != keyA+":"+keyB+":"+keyC || pk.Wrapped != "" {
		t.Fatalf("plain keys file: %+v %v", pk, err)
	}
	o := &converseOptions{keysFile: plainOut, kvn: "30", level: "03", operation: "other", outcome: "success", scripts: stringList{s1}}
	p, err := o.prepare()
	if err != nil || p.begin.SEID != testSEID || p.begin.TargetAID != testNewSD || p.session.kvn != 0x30 {
		t.Fatalf("converse from the plain keys file: %+v %v", p, err)
	}
	// An explicit --kvn wins over the file's.
	o = &converseOptions{keysFile: plainOut, kvn: "31", set: []string{"kvn"}, level: "03", operation: "other", outcome: "success", scripts: stringList{s1}}
	if p, err := o.prepare(); err != nil || p.session.kvn != 0x31 {
		t.Fatalf("--kvn 31 with a keys file: %v", err)
	}
	if got := len(f.serviceRequests); got != 2 {
		t.Errorf("%d pre-personalize requests, want 2", got)
	}
}

func TestServiceCommand(t *testing.T) {
	url, js := startBus(t)
	f := startFakeTSM(t, js)
	code, out, errOut := runCLI(t, "--nats", url, "--sp", testSPID, "service", "suspend", "--se", strings.ToLower(testSEID),
		"--service", "1/1", "--prn", "card-7")
	if code != exitOK || strings.TrimSpace(out) != "SE "+testSEID+" service 1/1 instance "+testInst+": suspended (suspended by the SP)" {
		t.Fatalf("exit %d\n%q\n%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "--nats", url, "--sp", testSPID, "--json", "service", "activate", "--se", testSEID, "--service", "1/1")
	if code != exitOK || !strings.Contains(out, `"state": "active"`) {
		t.Fatalf("--json: exit %d %s", code, out)
	}
	code, _, errOut = runCLI(t, "--nats", url, "--sp", testSPID, "service", "state", "--se", testSEID, "--service", "404/1")
	if code != exitFailed || !strings.Contains(errOut, "NOT_FOUND") {
		t.Fatalf("failure: exit %d %s", code, errOut)
	}
	f.mu.Lock()
	reqs := append([]contract.ServiceRequest(nil), f.serviceRequests...)
	ops := append([]string(nil), f.ops...)
	f.mu.Unlock()
	if strings.Join(ops, ",") != "suspend-service,activate-service,get-service-state" || len(reqs) != 3 ||
		reqs[0].SEID != testSEID || reqs[0].ServiceQualifier == nil || reqs[0].ServiceQualifier.PRN != "card-7" {
		t.Errorf("requests %v %+v", ops, reqs)
	}
	for _, args := range [][]string{{"service"}, {"service", "pause", "--se", testSEID, "--service", "1/1"},
		{"service", "activate", "--se", testSEID}, {"service", "activate", "--se", "xyz", "--service", "1/1"}} {
		if code, _, _ := runCLI(t, append([]string{"--nats", url, "--sp", testSPID}, args...)...); code != exitUsage {
			t.Errorf("%v: exit %d", args, code)
		}
	}
}

func TestAdminCommand(t *testing.T) {
	type call struct{ method, path, body string }
	var mu sync.Mutex
	var calls []call
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		buf := make([]byte, 4096)
		n, _ := r.Body.Read(buf)
		b.Write(buf[:n])
		mu.Lock()
		calls = append(calls, call{r.Method, r.URL.Path, b.String()})
		mu.Unlock()
		if strings.Contains(r.URL.Path, "0100000000000009") {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"type":"urn:x","title":"Not found","status":404,"detail":"no SE 0100000000000009: enroll it first",` +
				`"errors":[{"field":"seId","detail":"unknown"}]}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"seId":"0100000000000005","status":"lost"}`))
	}))
	defer srv.Close()
	reg := []string{"--registry", srv.URL}
	for _, args := range [][]string{
		{"admin", "se-status", "--se", "0100000000000005", "lost"},
		{"admin", "subscription", "--se", "0100000000000005", "--msi", "+4915100000099", "--mno", "mno-b"},
		{"admin", "audit", "--se", "0100000000000005"},
		{"admin", "se", "--se", "0100000000000005"},
	} {
		code, out, errOut := runCLI(t, append(args, reg...)...)
		if code != exitOK || !strings.Contains(out, `"status": "lost"`) {
			t.Errorf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
	}
	want := []call{
		{"POST", "/v1/ses/0100000000000005/status", `{"status":"lost"}`},
		{"POST", "/v1/ses/0100000000000005/subscription", `{"mno":"mno-b","msi":"+4915100000099"}`},
		{"POST", "/v1/ses/0100000000000005/audit", `{}`},
		{"GET", "/v1/ses/0100000000000005", ""},
	}
	mu.Lock()
	got := append([]call(nil), calls...)
	mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("calls %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("call %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	code, _, errOut := runCLI(t, append([]string{"admin", "se", "--se", "0100000000000009"}, reg...)...)
	if code != exitFailed || !strings.Contains(errOut, "404 Not Found: Not found: no SE 0100000000000009: enroll it first") ||
		!strings.Contains(errOut, "seId: unknown") {
		t.Errorf("problem: exit %d %s", code, errOut)
	}
	for _, args := range [][]string{
		{"admin"}, {"admin", "se-status", "--se", "0100000000000005"}, {"admin", "se-status", "--se", "0100000000000005", "misplaced"},
		{"admin", "subscription", "--se", "0100000000000005"}, {"admin", "audit", "--se", "0100000000000005", "--msi", "1"},
		{"admin", "se"}, {"admin", "reboot", "--se", "0100000000000005"}, {"admin", "se", "--se", "0100000000000005", "--registry", "127.0.0.1:8080"},
	} {
		if code, _, errOut := runCLI(t, args...); code != exitUsage || errOut == "" {
			t.Errorf("%v: exit %d %q", args, code, errOut)
		}
	}
	mu.Lock()
	if len(calls) != len(want)+1 {
		t.Errorf("bad usage reached the registry: %v", calls[len(want)+1:])
	}
	mu.Unlock()
}
