package service_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bustest"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/keycustody"

	"github.com/tsmhub/tsmhub/services/registry/domain"
	"github.com/tsmhub/tsmhub/services/registry/ports"
)

// problem is an RFC 9457 problem document as a client reads it.
type problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance"`
	Errors   []struct {
		Field  string `json:"field"`
		Detail string `json:"detail"`
	} `json:"errors"`
}

// wantProblem checks the problem+json shape of r and returns it.
func wantProblem(t *testing.T, r httpResult, status int, typ string) problem {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != ports.ContentTypeProblem {
		t.Fatalf("Content-Type %q, want %s", ct, ports.ContentTypeProblem)
	}
	var p problem
	r.decode(t, &p)
	var raw map[string]any
	r.decode(t, &raw)
	for _, member := range []string{"type", "title", "status", "detail", "errors"} {
		if _, ok := raw[member]; !ok {
			t.Fatalf("problem has no %q member: %s", member, r.Body)
		}
	}
	if p.Type != typ || p.Status != status || p.Title == "" || p.Detail == "" {
		t.Fatalf("problem %+v, want type %s", p, typ)
	}
	return p
}

func (p problem) field(name string) string {
	for _, e := range p.Errors {
		if e.Field == name {
			return e.Detail
		}
	}
	return ""
}

// validateRecord checks that a published record is what the registry promises.
func validateRecord(t *testing.T, h *harness, m *jetstream.RawStreamMsg, ceType, ceSubject string) {
	t.Helper()
	if got := m.Header.Get("ce-type"); got != ceType {
		t.Errorf("%s: ce-type %q, want %q", m.Subject, got, ceType)
	}
	if got := m.Header.Get("ce-source"); got != "urn:tsm:svc:registry" {
		t.Errorf("%s: ce-source %q", m.Subject, got)
	}
	if got := m.Header.Get("ce-subject"); got != ceSubject {
		t.Errorf("%s: ce-subject %q, want %q", m.Subject, got, ceSubject)
	}
	if m.Header.Get("ce-id") == "" || m.Header.Get("Nats-Msg-Id") != m.Header.Get("ce-id") {
		t.Errorf("%s: ce-id %q, Nats-Msg-Id %q", m.Subject, m.Header.Get("ce-id"), m.Header.Get("Nats-Msg-Id"))
	}
	if h.schemas.Has(ceType) {
		if err := h.schemas.Validate(ceType, m.Data); err != nil {
			t.Errorf("%s does not match its schema: %v", m.Subject, err)
		}
	}
}

var (
	bankAKey = "00112233445566778899aabbccddeeff"
	bankBKey = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f"
)

// seBody is a valid PUT /v1/ses body.
func seBody(msi, mno string) map[string]any {
	return map[string]any{"msi": msi, "mno": mno, "seType": "eSE", "configuration": "embedded", "profileId": "demo-ese",
		"gpVersion": "2.3.1", "javaCardVersion": "3.0.5", "certificationLevel": "EAL5+", "expiresAt": "2035-06-30T00:00:00Z"}
}

func enrollBasics(t *testing.T, h *harness) {
	t.Helper()
	h.mustDo("PUT", "/v1/mnos/mno-a", map[string]any{"name": "MNO A", "otaCarrier": "https"}, http.StatusCreated)
	h.mustDo("PUT", "/v1/mnos/mno-b", map[string]any{"name": "MNO B", "otaCarrier": "sms", "latencyMs": 40}, http.StatusCreated)
	h.mustDo("PUT", "/v1/sps/bank-a", map[string]any{"name": "Bank A", "keyTransportKey": bankAKey}, http.StatusCreated)
	h.mustDo("PUT", "/v1/sps/bank-b", map[string]any{"name": "Bank B", "keyTransportKey": bankBKey,
		"securityDomainAid": "a0000005550b0b0b"}, http.StatusCreated)
}

func TestAdminAPIHappyPaths(t *testing.T) {
	h := startRegistry(t)
	enrollBasics(t, h)

	// MNOs: defaults by carrier, idempotent PUT, GET.
	var mno events.MNORecord
	h.mustDo("GET", "/v1/mnos/mno-b", nil, http.StatusOK).decode(t, &mno)
	if mno.MaxAPDUsPerScript != 8 || mno.LatencyMs != 40 || mno.OTACarrier != "sms" {
		t.Fatalf("mno-b %+v", mno)
	}
	h.mustDo("PUT", "/v1/mnos/mno-b", map[string]any{"name": "MNO B", "otaCarrier": "sms", "latencyMs": 40}, http.StatusOK)
	h.mustDo("GET", "/v1/mnos/mno-a", nil, http.StatusOK).decode(t, &mno)
	if mno.MaxAPDUsPerScript != 32 || mno.LatencyMs != 0 {
		t.Fatalf("mno-a %+v", mno)
	}
	validateRecord(t, h, h.lastRecord("tsm.reg.mno.mno-a", nil), events.TypeRegistryMNO, "mno-a")

	// SPs: the default SD AID, and the key nowhere in the answer.
	var sp map[string]any
	h.mustDo("GET", "/v1/sps/bank-a", nil, http.StatusOK).decode(t, &sp)
	if sp["securityDomainAid"] != domain.DefaultSecurityDomainAID("bank-a") || sp["name"] != "Bank A" || len(sp) != 3 {
		t.Fatalf("bank-a %v: want spId, name and the default securityDomainAid only", sp)
	}
	h.mustDo("PUT", "/v1/sps/bank-a", map[string]any{"name": "Bank A", "keyTransportKey": strings.ToUpper(bankAKey)}, http.StatusOK)
	validateRecord(t, h, h.lastRecord("tsm.reg.sp.bank-b", nil), events.TypeRegistrySP, "bank-b")

	// Catalog.
	svc := map[string]any{"spId": "bank-a", "elfAid": "A00000055501", "moduleAid": "A0000005550101",
		"instanceAid": "a000000555010101", "installParams": "c90100"}
	h.mustDo("PUT", "/v1/services/pay/1", svc, http.StatusCreated)
	h.mustDo("PUT", "/v1/services/pay/1", svc, http.StatusOK)
	var rec events.ServiceRecord
	h.mustDo("GET", "/v1/services/pay/1", nil, http.StatusOK).decode(t, &rec)
	if rec.InstanceAID != "A000000555010101" || rec.InstallParams != "C90100" || rec.SPID != "bank-a" {
		t.Fatalf("service %+v", rec)
	}
	validateRecord(t, h, h.lastRecord("tsm.reg.svc.pay.1", nil), events.TypeRegistryService, "pay/1")

	// SEs: lowercase id in, uppercase out; same body -> 200 and no change.
	body := seBody("+491701234567", "mno-a")
	body["preIssuedSpDomains"] = []map[string]any{{"spId": "bank-a"}, {"spId": "bank-b", "aid": "a0000005550b0b0c"}}
	var se events.SERecord
	h.mustDo("PUT", "/v1/ses/0102030405060708090a0b0c", body, http.StatusCreated).decode(t, &se)
	const seID = "0102030405060708090A0B0C"
	if se.SEID != seID || se.MSI != "491701234567" || se.MSIType != "MSISDN" || se.Status != "active" ||
		len(se.PreIssuedSPDomains) != 2 || se.PreIssuedSPDomains[0].AID != domain.DefaultSecurityDomainAID("bank-a") ||
		se.PreIssuedSPDomains[1].AID != "A0000005550B0B0C" {
		t.Fatalf("PUT SE answered %+v", se)
	}
	var again events.SERecord
	h.mustDo("PUT", "/v1/ses/"+seID, body, http.StatusOK).decode(t, &again)
	if !again.UpdatedAt.Equal(se.UpdatedAt) {
		t.Fatalf("an identical PUT changed updatedAt from %v to %v", se.UpdatedAt, again.UpdatedAt)
	}
	h.mustDo("GET", "/v1/ses/"+strings.ToLower(seID), nil, http.StatusOK).decode(t, &again)
	if again.SEID != seID || again.ProfileID != "demo-ese" {
		t.Fatalf("GET SE %+v", again)
	}
	h.mustDo("GET", "/v1/ses?msi=491701234567", nil, http.StatusOK).decode(t, &again)
	if again.SEID != seID {
		t.Fatalf("GET by MSI found %s", again.SEID)
	}
	validateRecord(t, h, h.lastRecord("tsm.reg.se."+seID, nil), events.TypeRegistrySE, seID)

	// Status and subscription changes publish the record.
	var op struct {
		OperationID string `json:"operationId"`
		Status      string `json:"status"`
	}
	h.mustDo("POST", "/v1/ses/"+seID+"/status", map[string]any{"status": "lost"}, http.StatusAccepted).decode(t, &op)
	if op.Status != "lost" || op.OperationID == "" {
		t.Fatalf("status answer %+v", op)
	}
	m := h.lastRecord("tsm.reg.se."+seID, func(m *jetstream.RawStreamMsg) bool { return bytes.Contains(m.Data, []byte(`"status":"lost"`)) })
	validateRecord(t, h, m, events.TypeRegistrySE, seID)
	h.mustDo("POST", "/v1/ses/"+seID+"/subscription", map[string]any{"msi": "491709999999", "mno": "mno-b"}, http.StatusOK).decode(t, &again)
	if again.MSI != "491709999999" || again.MNO != "mno-b" || again.Status != "lost" {
		t.Fatalf("after subscription change %+v", again)
	}
	h.lastRecord("tsm.reg.se."+seID, func(m *jetstream.RawStreamMsg) bool { return bytes.Contains(m.Data, []byte(`"mno":"mno-b"`)) })
	wantProblem(t, h.do("GET", "/v1/ses?msi=491701234567", nil), http.StatusNotFound, ports.ProblemNotFound)
	h.mustDo("GET", "/v1/ses?msi=491709999999&msiType=MSISDN", nil, http.StatusOK)
	h.mustDo("GET", "/healthz", nil, http.StatusOK)
}

func TestAdminAPIErrors(t *testing.T) {
	h := startRegistry(t)
	enrollBasics(t, h)

	// Bad hex key: the field is named, the key is not repeated.
	badKey := "00112233445566778899aabbccddeeZZ"
	p := wantProblem(t, h.do("PUT", "/v1/sps/bank-c", map[string]any{"name": "C", "keyTransportKey": badKey}),
		http.StatusBadRequest, ports.ProblemInvalidFields)
	if p.field("keyTransportKey") == "" || strings.Contains(p.Detail+fmt.Sprint(p.Errors), badKey) {
		t.Fatalf("bad key problem %+v", p)
	}
	p = wantProblem(t, h.do("PUT", "/v1/sps/bank-c", map[string]any{"name": "C", "keyTransportKey": "0011223344556677"}),
		http.StatusBadRequest, ports.ProblemInvalidFields)
	if !strings.Contains(p.field("keyTransportKey"), "8 bytes") {
		t.Fatalf("short key problem %+v", p)
	}
	// Unknown MNO, several bad fields at once, bad hex AID in the catalog.
	p = wantProblem(t, h.do("PUT", "/v1/ses/1111111111111111", seBody("491700000001", "mno-x")),
		http.StatusBadRequest, ports.ProblemInvalidFields)
	if !strings.Contains(p.field("mno"), "mno-x") {
		t.Fatalf("unknown MNO problem %+v", p)
	}
	bad := seBody("12", "mno-a")
	bad["seType"], bad["expiresAt"] = "SIM", "next year"
	p = wantProblem(t, h.do("PUT", "/v1/ses/11", bad), http.StatusBadRequest, ports.ProblemInvalidFields)
	for _, f := range []string{"seId", "msi", "seType", "expiresAt"} {
		if p.field(f) == "" {
			t.Errorf("no error for %s in %+v", f, p.Errors)
		}
	}
	p = wantProblem(t, h.do("PUT", "/v1/services/pay/1", map[string]any{"spId": "bank-a", "elfAid": "XYZ",
		"moduleAid": "A0000005550101", "instanceAid": "A000000555010101"}), http.StatusBadRequest, ports.ProblemInvalidFields)
	if p.field("elfAid") == "" {
		t.Fatalf("bad AID problem %+v", p)
	}
	wantProblem(t, h.do("PUT", "/v1/services/pay/1", map[string]any{"spId": "bank-x", "elfAid": "A00000055501",
		"moduleAid": "A0000005550101", "instanceAid": "A000000555010101"}), http.StatusBadRequest, ports.ProblemInvalidFields)
	wantProblem(t, h.do("PUT", "/v1/mnos/mno-c", map[string]any{"name": "C", "otaCarrier": "https", "maxApdusPerScript": 0}),
		http.StatusBadRequest, ports.ProblemInvalidFields)

	// Duplicate MSI: 409 naming the holder, not the MSI.
	h.mustDo("PUT", "/v1/ses/1111111111111111", seBody("491700000001", "mno-a"), http.StatusCreated)
	p = wantProblem(t, h.do("PUT", "/v1/ses/2222222222222222", seBody("+491700000001", "mno-b")), http.StatusConflict, ports.ProblemConflict)
	if !strings.Contains(p.Detail, "1111111111111111") || strings.Contains(p.Detail, "491700000001") {
		t.Fatalf("duplicate MSI problem %+v", p)
	}
	h.mustDo("PUT", "/v1/ses/2222222222222222", seBody("491700000002", "mno-b"), http.StatusCreated)
	wantProblem(t, h.do("POST", "/v1/ses/2222222222222222/subscription", map[string]any{"msi": "491700000001"}),
		http.StatusConflict, ports.ProblemConflict)

	// Malformed bodies.
	p = wantProblem(t, h.do("PUT", "/v1/mnos/mno-c", `{"name": "C", `), http.StatusBadRequest, ports.ProblemMalformedBody)
	p = wantProblem(t, h.do("PUT", "/v1/mnos/mno-c", `{"name": "C", "otaCarrier": "https", "colour": "red"}`),
		http.StatusBadRequest, ports.ProblemMalformedBody)
	if p.field("colour") == "" {
		t.Fatalf("unknown field problem %+v", p)
	}
	p = wantProblem(t, h.do("PUT", "/v1/mnos/mno-c", `{"name": "C", "otaCarrier": "https", "latencyMs": "fast"}`),
		http.StatusBadRequest, ports.ProblemMalformedBody)
	if p.field("latencyMs") == "" {
		t.Fatalf("wrong type problem %+v", p)
	}
	wantProblem(t, h.do("PUT", "/v1/mnos/mno-c", `{"name": "C", "otaCarrier": "https"} {}`), http.StatusBadRequest, ports.ProblemMalformedBody)
	wantProblem(t, h.do("PUT", "/v1/mnos/mno-c", ``), http.StatusBadRequest, ports.ProblemMalformedBody)

	// Unknown resources, bad statuses, bad ids.
	wantProblem(t, h.do("GET", "/v1/ses/3333333333333333", nil), http.StatusNotFound, ports.ProblemNotFound)
	wantProblem(t, h.do("GET", "/v1/mnos/mno-x", nil), http.StatusNotFound, ports.ProblemNotFound)
	wantProblem(t, h.do("GET", "/v1/sps/bank-x", nil), http.StatusNotFound, ports.ProblemNotFound)
	wantProblem(t, h.do("GET", "/v1/services/pay/9", nil), http.StatusNotFound, ports.ProblemNotFound)
	wantProblem(t, h.do("GET", "/v1/ses/not-hex", nil), http.StatusBadRequest, ports.ProblemInvalidFields)
	wantProblem(t, h.do("GET", "/v1/ses", nil), http.StatusBadRequest, ports.ProblemInvalidFields)
	wantProblem(t, h.do("POST", "/v1/ses/1111111111111111/status", map[string]any{"status": "melted"}),
		http.StatusBadRequest, ports.ProblemInvalidFields)
	wantProblem(t, h.do("POST", "/v1/ses/3333333333333333/status", map[string]any{"status": "lost"}),
		http.StatusNotFound, ports.ProblemNotFound)

	// ses:import is its own route: GET on it is not a look-up of SE "ses:import".
	if r := h.do("GET", "/v1/ses:import", nil); r.Status != http.StatusMethodNotAllowed {
		t.Fatalf("GET /v1/ses:import: status %d, want 405", r.Status)
	}
}

func TestKeyTransportKeyNeverLeaves(t *testing.T) {
	h := startRegistry(t)
	key := "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0"
	h.mustDo("PUT", "/v1/sps/bank-k", map[string]any{"name": "Bank K", "keyTransportKey": key}, http.StatusCreated)
	// A changed key is a change: the record is re-published, still without it.
	key2 := "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	h.mustDo("PUT", "/v1/sps/bank-k", map[string]any{"name": "Bank K", "keyTransportKey": key2}, http.StatusOK)
	get := h.mustDo("GET", "/v1/sps/bank-k", nil, http.StatusOK)
	m := h.lastRecord("tsm.reg.sp.bank-k", nil)
	validateRecord(t, h, m, events.TypeRegistrySP, "bank-k")
	bustest.EventuallyReport(t, waitTimeout, "both SP records relayed", func() (bool, string) {
		n := bustest.CountMessages(t, h.js, "TSM_REG", "tsm.reg.sp.bank-k")
		return n == 1, fmt.Sprint(n)
	})
	file, err := os.ReadFile(h.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(file) == 0 || !bytes.Contains(file, []byte("bank-k")) {
		t.Fatalf("the bbolt file (%d bytes) does not hold the SP: wrong file?", len(file))
	}
	for _, k := range []string{key, key2} {
		raw, _ := hex.DecodeString(k)
		forms := map[string][]byte{"raw": raw, "hex": []byte(k), "HEX": []byte(strings.ToUpper(k)),
			"base64": []byte(base64.StdEncoding.EncodeToString(raw))}
		for name, form := range forms {
			for where, data := range map[string][]byte{"bbolt file": file, "GET response": get.Body, "published record": m.Data,
				"log": []byte(h.logs.String())} {
				if bytes.Contains(data, form) {
					t.Errorf("the %s contains the key-transport key (%s)", where, name)
				}
			}
		}
	}
	var rec map[string]any
	if err := json.Unmarshal(m.Data, &rec); err != nil || len(rec) != 4 {
		t.Fatalf("published SP record %s: want spId, name, securityDomainAid, keyTransportKeyWrapped only", m.Data)
	}
	// The record carries the key wrapped under the key-exchange key: it
	// unwraps to the key last PUT, and not under another key.
	wrapped, _ := rec["keyTransportKeyWrapped"].(string)
	got, err := keycustody.UnwrapTransportKey(testExchangeKey, wrapped)
	if err != nil || hex.EncodeToString(got) != key2 {
		t.Fatalf("keyTransportKeyWrapped does not unwrap to the PUT key under the key-exchange key: %v", err)
	}
	if _, err := keycustody.UnwrapTransportKey(keycustody.DemoKeyExchangeKey, wrapped); err == nil {
		t.Fatal("keyTransportKeyWrapped unwraps under the demo key-exchange key too")
	}
}

// importLine is one JSON line of an import.
func importLine(seID, msi, mno string) string {
	b := seBody(msi, mno)
	b["seId"] = seID
	raw, _ := json.Marshal(b)
	return string(raw)
}

func TestImportTenThousandLines(t *testing.T) {
	h := startRegistry(t)
	enrollBasics(t, h)
	const total = 10_000
	lines := make([]string, total)
	for i := range lines {
		lines[i] = importLine(fmt.Sprintf("%016x", 0xA000_0000_0000_0000+uint64(i)), fmt.Sprintf("4930%08d", i), "mno-a")
	}
	// A few bad lines (1-based numbers in the report).
	lines[16] = importLine("12345", "493099999917", "mno-a")                             // 17: bad seId
	lines[499] = importLine("B000000000000500", "493099999500", "mno-x")                 // 500: unknown MNO
	lines[7000] = importLine("B000000000007001", fmt.Sprintf("4930%08d", 6999), "mno-a") // 7001: MSI of line 7000
	lines[9998] = `{"seId": "B000000000009999", "msi": `                                 // 9999: not JSON
	lines[4321] = strings.Replace(lines[4321], `"mno"`, `"colour":"red","mno"`, 1)       // 4322: unknown field
	body := strings.Join(lines, "\n") + "\n"
	start := time.Now()
	r := h.mustDo("POST", "/v1/ses:import", body, http.StatusOK)
	t.Logf("imported %d lines in %v", total, time.Since(start))
	var rep struct {
		Imported, Updated, Unchanged, Failed int
		Errors                               []struct {
			Line  int
			Error string
		}
	}
	r.decode(t, &rep)
	if rep.Imported != total-5 || rep.Updated != 0 || rep.Failed != 5 || len(rep.Errors) != 5 {
		t.Fatalf("report %+v", rep)
	}
	want := map[int]string{17: "seId", 500: "mno-x", 4322: "colour", 7001: "already held by SE A000000000001B57", 9999: "not valid JSON"}
	for _, e := range rep.Errors {
		if w, ok := want[e.Line]; !ok || !strings.Contains(e.Error, w) {
			t.Errorf("line %d: error %q, want one about %q", e.Line, e.Error, w)
		}
		delete(want, e.Line)
	}
	if len(want) > 0 {
		t.Errorf("lines not reported: %v", want)
	}
	var se events.SERecord
	h.mustDo("GET", "/v1/ses/a000000000002710", nil, http.StatusNotFound)
	h.mustDo("GET", "/v1/ses/a00000000000270f", nil, http.StatusOK).decode(t, &se)
	if se.MSI != "493000009999" {
		t.Fatalf("last line's SE %+v", se)
	}
	// One record per imported SE reaches the bus.
	bustest.EventuallyReport(t, waitTimeout, "one record per imported SE", func() (bool, string) {
		n := bustest.CountMessages(t, h.js, "TSM_REG", "tsm.reg.se.>")
		return n == total-5, fmt.Sprint(n)
	})
	// Importing the same file again changes nothing.
	r = h.mustDo("POST", "/v1/ses:import", body, http.StatusOK)
	r.decode(t, &rep)
	if rep.Imported != 0 || rep.Updated != 0 || rep.Unchanged != total-5 || rep.Failed != 5 {
		t.Fatalf("second import %+v", rep)
	}
}

func TestLogsCarryNoMSI(t *testing.T) {
	h := startRegistry(t)
	enrollBasics(t, h)
	h.mustDo("PUT", "/v1/ses/4444444444444444", seBody("491755512345", "mno-a"), http.StatusCreated)
	h.do("PUT", "/v1/ses/5555555555555555", seBody("491755512345", "mno-a"))
	h.mustDo("POST", "/v1/ses/4444444444444444/subscription", map[string]any{"msi": "491755554321"}, http.StatusOK)
	h.mustDo("POST", "/v1/ses:import", importLine("6666666666666666", "491755599999", "mno-a")+"\n"+
		importLine("7777777777777777", "491755599999", "mno-a")+"\n", http.StatusOK)
	sp := newSP(t, h, "bank-a")
	sp.call(t, "get-se-id", "log-1", map[string]any{"msi": "491755554321"})
	sp.call(t, "get-se-id", "log-2", map[string]any{"msi": "491755500000"})
	sp.call(t, "get-se-data", "log-3", map[string]any{"seId": "4444444444444444", "msi": "491755511111"})
	logs := h.logs.String()
	if !strings.Contains(logs, "4444444444444444") {
		t.Fatal("the log does not mention the SE at all: is it captured?")
	}
	for _, msi := range []string{"491755512345", "491755554321", "491755599999", "491755500000", "491755511111"} {
		if strings.Contains(logs, msi) {
			t.Errorf("the log contains MSI digits %s", msi)
		}
	}
}
