package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

func fieldsOf(t *testing.T, err error) map[string]string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *ValidationError, got %v", err)
	}
	m := map[string]string{}
	for _, f := range ve.Fields {
		m[f.Field] = f.Detail
	}
	return m
}

func intp(n int) *int { return &n }

func TestNewMNODefaultsByCarrier(t *testing.T) {
	for _, tc := range []struct {
		carrier string
		want    int
	}{{CarrierHTTPS, 32}, {CarrierSMS, 8}} {
		m, err := NewMNO("mno-a", MNOInput{Name: "A", OTACarrier: tc.carrier})
		if err != nil {
			t.Fatal(err)
		}
		if m.MaxAPDUsPerScript != tc.want || m.LatencyMs != 0 {
			t.Errorf("%s: maxApdusPerScript=%d latency=%d, want %d and 0", tc.carrier, m.MaxAPDUsPerScript, m.LatencyMs, tc.want)
		}
	}
	m, err := NewMNO("mno-a", MNOInput{Name: "A", OTACarrier: CarrierSMS, MaxAPDUsPerScript: intp(4), LatencyMs: intp(250)})
	if err != nil || m.MaxAPDUsPerScript != 4 || m.LatencyMs != 250 {
		t.Fatalf("explicit limits: %+v %v", m, err)
	}
}

func TestNewMNOReportsEveryField(t *testing.T) {
	_, err := NewMNO("Bad.Id", MNOInput{OTACarrier: "pigeon", MaxAPDUsPerScript: intp(0), LatencyMs: intp(-1)})
	f := fieldsOf(t, err)
	for _, name := range []string{"mnoId", "name", "otaCarrier", "maxApdusPerScript", "latencyMs"} {
		if f[name] == "" {
			t.Errorf("no error for %s in %v", name, f)
		}
	}
}

func TestDefaultSecurityDomainAID(t *testing.T) {
	sum := sha256.Sum256([]byte("bank-a"))
	want := "A000000555AA" + strings.ToUpper(hex.EncodeToString(sum[:2]))
	if got := DefaultSecurityDomainAID("bank-a"); got != want || len(got) != 16 {
		t.Fatalf("got %s, want %s (8 bytes)", got, want)
	}
	if DefaultSecurityDomainAID("bank-a") == DefaultSecurityDomainAID("bank-b") {
		t.Fatal("two SPs got the same default AID")
	}
}

func TestNewSP(t *testing.T) {
	key := strings.Repeat("0F", 16)
	sp, k, err := NewSP("bank-a", SPInput{Name: "Bank A", KeyTransportKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if sp.SecurityDomainAID != DefaultSecurityDomainAID("bank-a") || len(k) != 16 {
		t.Fatalf("sp %+v key len %d", sp, len(k))
	}
	sp, _, err = NewSP("bank-a", SPInput{Name: "Bank A", KeyTransportKey: strings.Repeat("ab", 32), SecurityDomainAID: "a0000005550102"})
	if err != nil || sp.SecurityDomainAID != "A0000005550102" {
		t.Fatalf("explicit AID: %+v %v", sp, err)
	}
}

func TestNewSPErrorsNeverQuoteTheKey(t *testing.T) {
	for _, key := range []string{"00112233445566778899AABBCCDDEE", "ZZ112233445566778899AABBCCDDEEFF", "00112233445566778899AABBCCDDEEFF0011"} {
		_, _, err := NewSP("bank-a", SPInput{Name: "A", KeyTransportKey: key})
		f := fieldsOf(t, err)
		if f["keyTransportKey"] == "" {
			t.Errorf("key %d chars: no keyTransportKey error", len(key))
		}
		if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), key[2:20]) {
			t.Errorf("error quotes the key: %v", err)
		}
	}
	_, _, err := NewSP("bank-a", SPInput{Name: "A", KeyTransportKey: strings.Repeat("00", 16), SecurityDomainAID: "A0"})
	if fieldsOf(t, err)["securityDomainAid"] == "" {
		t.Error("short AID accepted")
	}
}

func TestNewService(t *testing.T) {
	s, err := NewService("pay", "1", ServiceInput{SPID: "bank-a", ELFAID: "a00000055501", ModuleAID: "A0000005550101",
		InstanceAID: "A000000555010101", InstallParams: "c900"})
	if err != nil {
		t.Fatal(err)
	}
	if s.ELFAID != "A00000055501" || s.InstallParams != "C900" || s.Key() != "pay/1" {
		t.Fatalf("%+v", s)
	}
	_, err = NewService("pay", "1.0", ServiceInput{SPID: "", ELFAID: "A0", ModuleAID: "xyz", InstanceAID: "", InstallParams: "0"})
	f := fieldsOf(t, err)
	for _, name := range []string{"version", "spId", "elfAid", "moduleAid", "instanceAid", "installParams"} {
		if f[name] == "" {
			t.Errorf("no error for %s in %v", name, f)
		}
	}
}

func validSEInput() SEInput {
	return SEInput{MSI: "+491701234567", MNO: "mno-a", SEType: SETypeESE, Configuration: ConfigEmbedded,
		ProfileID: "p1", GPVersion: "2.3.1", JavaCardVersion: "3.0.5", CertificationLevel: "EAL5+",
		ExpiresAt: "2030-12-31T23:59:59+01:00"}
}

func TestNewSENormalizes(t *testing.T) {
	se, err := NewSE("0102030405060708090a", validSEInput())
	if err != nil {
		t.Fatal(err)
	}
	if se.ID != "0102030405060708090A" || se.MSI != "491701234567" || se.MSIType != MSITypeMSISDN || se.Status != StatusActive {
		t.Fatalf("%+v", se)
	}
	if want := time.Date(2030, 12, 31, 22, 59, 59, 0, time.UTC); !se.ExpiresAt.Equal(want) || se.ExpiresAt.Location() != time.UTC {
		t.Fatalf("expiresAt %v", se.ExpiresAt)
	}
}

func TestNewSEReportsEveryField(t *testing.T) {
	in := SEInput{MSI: "12", MSIType: "IMSI", SEType: "SIM", Configuration: "flat", ExpiresAt: "tomorrow",
		PreIssuedSPDomains: []PreIssuedSD{{SPID: "bank-a", AID: "XY"}, {SPID: "bank-a"}}}
	_, err := NewSE("0102", in)
	f := fieldsOf(t, err)
	for _, name := range []string{"seId", "msi", "msiType", "mno", "seType", "configuration", "profileId", "gpVersion",
		"javaCardVersion", "certificationLevel", "expiresAt", "preIssuedSpDomains[0].aid", "preIssuedSpDomains[1].spId"} {
		if f[name] == "" {
			t.Errorf("no error for %s in %v", name, f)
		}
	}
	if f["msi"] != MSIRule() {
		t.Errorf("msi error %q: want the syntax rule, which quotes no MSI", f["msi"])
	}
}

func TestSEIDBounds(t *testing.T) {
	for id, ok := range map[string]bool{
		strings.Repeat("ab", 7): false, strings.Repeat("ab", 8): true, strings.Repeat("AB", 16): true,
		strings.Repeat("ab", 17): false, strings.Repeat("a", 17): false, "zz" + strings.Repeat("00", 8): false,
	} {
		if _, got := NormalizeSEID(id); got != ok {
			t.Errorf("NormalizeSEID(%s) = %v, want %v", id, got, ok)
		}
	}
}

func TestSEStatusAndExpiry(t *testing.T) {
	if !StatusLost.Inaccessible() || !StatusStolen.Inaccessible() || StatusFound.Inaccessible() || StatusActive.Inaccessible() {
		t.Fatal("Inaccessible is wrong")
	}
	if _, ok := ParseReportedStatus("active"); ok {
		t.Fatal("active is not a status an operator reports")
	}
	se, _ := NewSE(strings.Repeat("01", 8), validSEInput())
	if se.Expired(se.ExpiresAt.Add(-time.Second)) || !se.Expired(se.ExpiresAt) {
		t.Fatal("Expired is wrong at the boundary")
	}
}

func TestSameContentIgnoresUpdatedAtOnly(t *testing.T) {
	in := validSEInput()
	in.PreIssuedSPDomains = []PreIssuedSD{{SPID: "bank-a", AID: "A000000555AA0001"}}
	a, _ := NewSE(strings.Repeat("01", 8), in)
	b := a
	b.PreIssuedSPDomains = append([]PreIssuedSD(nil), a.PreIssuedSPDomains...)
	b.UpdatedAt = time.Now()
	if !a.SameContent(b) {
		t.Fatal("UpdatedAt alone made a difference")
	}
	b.PreIssuedSPDomains[0].AID = "A000000555AA0002"
	if a.SameContent(b) {
		t.Fatal("a changed SD AID went unnoticed")
	}
	c := a
	c.Status = StatusLost
	if a.SameContent(c) {
		t.Fatal("a changed status went unnoticed")
	}
}

func TestIneligibility(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	se := SE{ID: "0101", SEType: "eSE", Configuration: "embedded", GPVersion: "2.2", CertificationLevel: "EMVCo",
		ExpiresAt: now.Add(time.Hour)}
	svc := Service{Number: "1", Version: "1"}
	if why := Ineligibility(se, svc, now); why != "" {
		t.Fatalf("eligible SE refused: %s", why)
	}
	for _, c := range []struct {
		mod  func(*SE, *Service)
		want string
	}{
		{func(s *SE, _ *Service) { s.ExpiresAt = now }, "expired"},
		{func(s *SE, _ *Service) { s.Configuration = "open" }, "configuration \"open\""},
		{func(s *SE, _ *Service) { s.GPVersion = "2.1.9" }, "GP 2.2 or later"},
		{func(s *SE, _ *Service) { s.GPVersion = "two" }, "not a version"},
		{func(_ *SE, v *Service) { v.Eligibility.MinGPVersion = "2.2.1" }, "requires GP 2.2.1"},
		{func(_ *SE, v *Service) { v.Eligibility.SETypes = []string{"UICC"} }, "type UICC"},
		{func(_ *SE, v *Service) { v.Eligibility.CertificationLevels = []string{"EAL6"} }, "EAL6"},
	} {
		s, v := se, svc
		c.mod(&s, &v)
		if why := Ineligibility(s, v, now); !strings.Contains(why, c.want) {
			t.Errorf("want %q in %q", c.want, why)
		}
	}
	if v, _ := ParseVersion("2.10"); CompareVersions(v, []int{2, 9}) <= 0 {
		t.Error("2.10 is not after 2.9")
	}
	for _, bad := range []string{"", "2.", ".2", "2.x", "-1", "+2"} {
		if _, ok := ParseVersion(bad); ok {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
	if _, err := NewService("1", "1", ServiceInput{SPID: "sp", ELFAID: "A00000055501", ModuleAID: "A0000005550101",
		InstanceAID: "A000000555010101", Eligibility: Eligibility{SETypes: []string{"SIM"}, MinGPVersion: "new"}}); err == nil ||
		!strings.Contains(err.Error(), "seTypes[0]") || !strings.Contains(err.Error(), "minGpVersion") {
		t.Errorf("bad eligibility accepted or not named: %v", err)
	}
}
