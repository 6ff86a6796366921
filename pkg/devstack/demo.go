package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
)

// Demo data set of the embedded default (README "Demo data set"). Key values
// here are demo values, published on purpose; never use them for real cards.
var (
	DemoSEs = []DemoSE{
		{SEID: "0100000000000001", MSI: "+4915100000001", MNO: "mno-a", SEType: "eSE", Configuration: "embedded"},
		{SEID: "0100000000000002", MSI: "+4915100000002", MNO: "mno-a", SEType: "UICC", Configuration: "uicc"},
		{SEID: "0100000000000003", MSI: "+4915100000003", MNO: "mno-b", SEType: "eSE", Configuration: "embedded-3p"},
		{SEID: "0100000000000004", MSI: "+4915100000004", MNO: "mno-b", SEType: "UICC", Configuration: "uicc-3p"},
	}
	// DemoBlankSEs are demo SEs issued without SP security domains, for the
	// pre-personalize walkthrough (docs/content-management.md): an SP gets its
	// SD there only from pre-personalize, with temporary keys. They are kept
	// apart from DemoSEs, whose every card has a pre-issued SD per demo SP
	// (tests run SP conversations on each of those).
	DemoBlankSEs = []DemoSE{
		{SEID: "0100000000000005", MSI: "+4915100000005", MNO: "mno-a", SEType: "eSE", Configuration: "embedded"},
	}
	// DemoSPs with their SD AIDs. The SD keys of the pre-issued SDs are
	// KDF3-diversified from DemoSPMasterKey (the se-simulator's default).
	DemoSPs = []DemoSP{
		{SPID: "bank1", Name: "Demo Bank", SDAID: "A000000555AA01", KeyTransportKey: "000102030405060708090A0B0C0D0E0F"},
		{SPID: "transit1", Name: "Demo Transit", SDAID: "A000000555AA02", KeyTransportKey: "101112131415161718191A1B1C1D1E1F"},
	}
)

// DemoSPMasterKey is the se-simulator's demo default SP SD master key.
const DemoSPMasterKey = "505152535455565758595A5B5C5D5E5F"

// AllDemoSEs returns every demo SE: DemoSEs, then DemoBlankSEs.
func AllDemoSEs() []DemoSE {
	return append(append([]DemoSE(nil), DemoSEs...), DemoBlankSEs...)
}

// DemoSE is one demo SE.
type DemoSE struct{ SEID, MSI, MNO, SEType, Configuration string }

// DemoSP is one demo SP.
type DemoSP struct{ SPID, Name, SDAID, KeyTransportKey string }

// SeedDemo enrols the demo data set through the registry's admin API
// (idempotent: PUTs).
func SeedDemo(ctx context.Context, registryAddr string) error {
	base := "http://" + registryAddr
	puts := []struct {
		path string
		body any
	}{
		{"/v1/mnos/mno-a", map[string]any{"name": "Demo MNO A", "otaCarrier": "https", "maxApdusPerScript": 32, "latencyMs": 20}},
		{"/v1/mnos/mno-b", map[string]any{"name": "Demo MNO B", "otaCarrier": "sms", "maxApdusPerScript": 16, "latencyMs": 50}},
	}
	for _, sp := range DemoSPs {
		puts = append(puts, struct {
			path string
			body any
		}{"/v1/sps/" + sp.SPID, map[string]any{"name": sp.Name, "keyTransportKey": sp.KeyTransportKey, "securityDomainAid": sp.SDAID}})
	}
	puts = append(puts,
		struct {
			path string
			body any
		}{"/v1/services/1/1", map[string]any{"spId": "bank1", "elfAid": "A00000055501", "moduleAid": "A0000005550101", "instanceAid": "A000000555010101"}},
		struct {
			path string
			body any
		}{"/v1/services/2/1", map[string]any{"spId": "transit1", "elfAid": "A00000055501", "moduleAid": "A0000005550101", "instanceAid": "A000000555010102"}},
	)
	for _, se := range AllDemoSEs() {
		body := map[string]any{
			"msi": se.MSI, "msiType": "MSISDN", "mno": se.MNO, "seType": se.SEType, "configuration": se.Configuration,
			"profileId": "demo-profile-1", "gpVersion": "2.3.1", "javaCardVersion": "3.0.5",
			"certificationLevel": "EMVCo", "expiresAt": "2036-01-01T00:00:00Z",
		}
		if !slices.Contains(DemoBlankSEs, se) {
			var pre []map[string]string
			for _, sp := range DemoSPs {
				pre = append(pre, map[string]string{"spId": sp.SPID, "aid": sp.SDAID})
			}
			body["preIssuedSpDomains"] = pre
		}
		puts = append(puts, struct {
			path string
			body any
		}{"/v1/ses/" + se.SEID, body})
	}
	for _, p := range puts {
		if err := put(ctx, base+p.path, p.body); err != nil {
			return err
		}
	}
	return nil
}

func put(ctx context.Context, url string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("PUT %s: %s: %s", url, resp.Status, msg)
	}
	return nil
}
