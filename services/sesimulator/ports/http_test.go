package ports_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/gp/card"

	"github.com/tsmhub/tsmhub/services/sesimulator/adapters"
	"github.com/tsmhub/tsmhub/services/sesimulator/app"
	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
	"github.com/tsmhub/tsmhub/services/sesimulator/internal/cardtest"
	"github.com/tsmhub/tsmhub/services/sesimulator/ports"
)

const seID = "0102030405060708"

func newServer(t *testing.T, debugAPDU bool) (*httptest.Server, *app.App) {
	t.Helper()
	store, err := bus.OpenStore(bus.StoreConfig{Path: filepath.Join(t.TempDir(), "s.db"), Buckets: adapters.Buckets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	sealer, _ := adapters.NewStateSealer(make([]byte, 32))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := app.New(adapters.NewFleetStore(store, sealer), app.Config{Log: log,
		Factory: domain.Factory{IssuerMasterKey: domain.DemoIssuerMasterKey, SPMasterKeys: domain.DemoSPMasterKeys()}})
	r := chi.NewRouter()
	ports.HTTP{App: a, DebugAPDU: debugAPDU, Log: log}.Mount(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, a
}

func call(t *testing.T, method, url, body string, wantStatus int, out any) string {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, resp.StatusCode, wantStatus, b)
	}
	if wantStatus >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("%s %s: error content type %q", method, url, resp.Header.Get("Content-Type"))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	return string(b)
}

func TestCardEndpoints(t *testing.T) {
	srv, a := newServer(t, false)
	call(t, "GET", srv.URL+"/v1/cards/"+seID, "", 404, nil)
	call(t, "GET", srv.URL+"/v1/cards/"+seID+"/counters", "", 404, nil)
	call(t, "GET", srv.URL+"/v1/cards/not-hex", "", 400, nil)
	if _, err := a.Enrol(context.Background(), app.EnrolCommand{EventID: "e1", Record: cardtest.Record(seID, "uicc")}); err != nil {
		t.Fatal(err)
	}
	var c ports.CardJSON
	body := call(t, "GET", srv.URL+"/v1/cards/"+strings.ToLower(seID), "", 200, &c)
	if c.CIN != seID || c.Configuration != "uicc" || c.LifeCycleState != "SECURED" {
		t.Errorf("card %+v", c)
	}
	byAID := map[string]ports.EntryJSON{}
	for _, e := range c.Registry {
		byAID[e.AID] = e
	}
	isd, central, sd := byAID["A000000151000000"], byAID[cardtest.Hex(card.CentralSDAID)], byAID[cardtest.SDAID]
	if isd.Kind != "ISD" || central.Kind != "SD" || central.AssociatedSD != "A000000151000000" {
		t.Errorf("ISD %+v, central SD %+v", isd, central)
	}
	if sd.Kind != "SD" || sd.AssociatedSD != cardtest.Hex(card.CentralSDAID) || sd.LifeCycleState != "PERSONALIZED" ||
		sd.Privileges == "" || len(sd.KeyVersions) != 1 || sd.KeyVersions[0] != "30" {
		t.Errorf("pre-issued SD %+v", sd)
	}
	// No key value of any SD may be in the view.
	enc, mac, dek, _ := card.DeriveSCP03Keys(domain.DemoSPMasterKey, card.KDDFromCIN(cardtest.Unhex(t, seID)))
	ienc, imac, idek, _ := card.DeriveSCP03Keys(domain.DemoIssuerMasterKey, card.KDDFromCIN(cardtest.Unhex(t, seID)))
	for _, k := range [][]byte{enc, mac, dek, ienc, imac, idek, domain.DemoSPMasterKey, domain.DemoIssuerMasterKey} {
		if strings.Contains(strings.ToUpper(body), cardtest.Hex(k)) {
			t.Fatal("card view contains a key value")
		}
	}
	var cnt ports.CountersJSON
	call(t, "GET", srv.URL+"/v1/cards/"+seID+"/counters", "", 200, &cnt)
	if cnt.APDUsExecuted != 0 || cnt.ScriptsExecuted != 0 || cnt.SEID != seID {
		t.Errorf("counters %+v", cnt)
	}
	var n ports.CardCountJSON
	call(t, "GET", srv.URL+"/v1/cards?count=true", "", 200, &n)
	if n.Count != 1 {
		t.Errorf("count %d", n.Count)
	}
	var list ports.CardListJSON
	call(t, "GET", srv.URL+"/v1/cards?limit=1", "", 200, &list)
	if len(list.SEIDs) != 1 || list.SEIDs[0] != seID || list.Next != seID {
		t.Errorf("list %+v", list)
	}
	var last ports.CardListJSON
	call(t, "GET", srv.URL+"/v1/cards?after="+seID, "", 200, &last)
	if len(last.SEIDs) != 0 || last.Next != "" {
		t.Errorf("page after the last card: %+v", last)
	}
	call(t, "GET", srv.URL+"/v1/cards?limit=0", "", 400, nil)
	// The debug endpoint is off unless configured.
	prob := call(t, "POST", srv.URL+"/v1/cards/"+seID+"/apdu", `{"apdu":"`+cardtest.SelectISD+`"}`, 403, nil)
	if !strings.Contains(prob, "SESIM_DEBUG_APDU") {
		t.Errorf("403 does not say how to enable: %s", prob)
	}
}

func TestDebugAPDUEndpoint(t *testing.T) {
	srv, a := newServer(t, true)
	call(t, "POST", srv.URL+"/v1/cards/"+seID+"/apdu", `{"apdu":"`+cardtest.SelectISD+`"}`, 404, nil)
	if _, err := a.Enrol(context.Background(), app.EnrolCommand{EventID: "e1", Record: cardtest.Record(seID, "embedded")}); err != nil {
		t.Fatal(err)
	}
	var out ports.APDUResponse
	call(t, "POST", srv.URL+"/v1/cards/"+seID+"/apdu", `{"apdu":"00 a4 04 00 08 a0 00 00 01 51 00 00 00 00"}`, 200, &out)
	if !strings.HasPrefix(out.Response, "6F") || !strings.HasSuffix(out.Response, "9000") {
		t.Errorf("SELECT ISD answered %s, want an FCI and 9000", out.Response)
	}
	call(t, "POST", srv.URL+"/v1/cards/"+seID+"/apdu", `{"apdu":"XYZ"}`, 400, nil)
	call(t, "POST", srv.URL+"/v1/cards/"+seID+"/apdu", `{"capdu":"00A4040000"}`, 400, nil)
	var cnt ports.CountersJSON
	call(t, "GET", srv.URL+"/v1/cards/"+seID+"/counters", "", 200, &cnt)
	if cnt.APDUsExecuted != 1 {
		t.Errorf("counters %+v, want 1 APDU", cnt)
	}
	var c ports.CardJSON
	call(t, "GET", srv.URL+"/v1/cards/"+seID, "", 200, &c)
	if c.ExecutionCount != 1 {
		t.Errorf("execution count %d", c.ExecutionCount)
	}
}
