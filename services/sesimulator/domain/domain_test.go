package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
)

func TestSecretKeyNeverPrintsItsValue(t *testing.T) {
	k := SecretKey{0xDE, 0xAD, 0xBE, 0xEF}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "key", k)
	js, _ := json.Marshal(struct{ K SecretKey }{k})
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%x", k), fmt.Sprintf("%X", k), fmt.Sprintf("%#v", k),
		fmt.Sprintf("%v", []any{k}), logged.String(), string(js)} {
		if strings.Contains(strings.ToLower(s), "deadbeef") || strings.Contains(s, "222 173") {
			t.Errorf("key value leaked: %q", s)
		}
	}
}

func TestParseSPMasterKeys(t *testing.T) {
	k, err := ParseSPMasterKeys(" bank-a=000102030405060708090A0B0C0D0E0F , *=505152535455565758595A5B5C5D5E5F")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := k.For("bank-a"); !ok || got[15] != 0x0F {
		t.Errorf("bank-a key not found")
	}
	if got, ok := k.For("transit"); !ok || !bytes.Equal(got, DemoSPMasterKey) {
		t.Errorf("default key not applied to an unlisted SP")
	}
	if !k.UsesDemoKey() {
		t.Errorf("UsesDemoKey = false with the demo key as default")
	}
	only, err := ParseSPMasterKeys("bank-a=000102030405060708090A0B0C0D0E0F")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := only.For("transit"); ok {
		t.Errorf("an unlisted SP got a key without a * entry")
	}
	if only.UsesDemoKey() {
		t.Errorf("UsesDemoKey = true without the demo key")
	}
	for _, bad := range []string{"bank-a", "=00", "Bank=000102030405060708090A0B0C0D0E0F",
		"bank-a=0001", "bank-a=zz0102030405060708090A0B0C0D0E0F",
		"a=000102030405060708090A0B0C0D0E0F,a=000102030405060708090A0B0C0D0E0F"} {
		_, err := ParseSPMasterKeys(bad)
		if err == nil {
			t.Errorf("ParseSPMasterKeys(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "0102030405") {
			t.Errorf("error shows key material: %v", err)
		}
	}
}

func testFactory() Factory {
	return Factory{IssuerMasterKey: DemoIssuerMasterKey, IIN: DefaultIIN, SPMasterKeys: DemoSPMasterKeys()}
}

func TestFactorySpec(t *testing.T) {
	rec := events.SERecord{SEID: "0102030405060708", Configuration: "uicc",
		PreIssuedSPDomains: []events.PreIssuedSD{{SPID: "bank-a", AID: "a0000007770a000001"}}}
	spec, err := testFactory().Spec(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(spec.CIN, []byte{1, 2, 3, 4, 5, 6, 7, 8}) || spec.Config != card.UICC {
		t.Errorf("spec CIN %X config %s", spec.CIN, spec.Config)
	}
	if len(spec.PreIssuedSPDomains) != 1 || !bytes.Equal(spec.PreIssuedSPDomains[0].MasterKey, DemoSPMasterKey) ||
		spec.PreIssuedSPDomains[0].AID[0] != 0xA0 {
		t.Errorf("pre-issued SDs: %+v", len(spec.PreIssuedSPDomains))
	}
	if _, err := card.Manufacture(spec); err != nil {
		t.Errorf("the card model refuses the spec: %v", err)
	}
}

func TestFactoryRejectsWhatCannotBeACard(t *testing.T) {
	noKeys := testFactory()
	noKeys.SPMasterKeys = SPMasterKeys{}
	cases := []struct {
		name string
		f    Factory
		rec  events.SERecord
		want string
	}{
		{"unknown configuration", testFactory(), events.SERecord{SEID: "0102030405060708", Configuration: "fridge"}, "unknown configuration"},
		{"lowercase SE id", testFactory(), events.SERecord{SEID: "0102030405060a08", Configuration: "uicc"}, "uppercase hex"},
		{"short CIN", testFactory(), events.SERecord{SEID: "01020304", Configuration: "uicc"}, "8 to 10 bytes"},
		{"bad AID", testFactory(), events.SERecord{SEID: "0102030405060708", Configuration: "uicc",
			PreIssuedSPDomains: []events.PreIssuedSD{{SPID: "bank-a", AID: "A000"}}}, "5-16 bytes"},
		{"duplicate AID", testFactory(), events.SERecord{SEID: "0102030405060708", Configuration: "uicc",
			PreIssuedSPDomains: []events.PreIssuedSD{{SPID: "a", AID: "A0000007770A000001"}, {SPID: "b", AID: "a0000007770a000001"}}}, "twice"},
		{"no SP key", noKeys, events.SERecord{SEID: "0102030405060708", Configuration: "uicc",
			PreIssuedSPDomains: []events.PreIssuedSD{{SPID: "bank-a", AID: "A0000007770A000001"}}}, "SESIM_SP_MASTER_KEYS"},
	}
	for _, tc := range cases {
		_, err := tc.f.Spec(tc.rec)
		if !errors.Is(err, ErrRejectedRecord) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want ErrRejectedRecord mentioning %q", tc.name, err, tc.want)
		}
	}
}

// scriptedCard answers each command with the next canned response.
type scriptedCard struct {
	answers [][]byte
	got     int
}

func (c *scriptedCard) Transmit([]byte) []byte {
	r := c.answers[c.got]
	c.got++
	return r
}

func TestScriptStopsAtFirstFailureUnlessContinueOnError(t *testing.T) {
	answers := [][]byte{{0x90, 0x00}, {0x01, 0x61, 0x10}, {0x62, 0x83}, {0x63, 0x10}, {0x69, 0x82}, {0x90, 0x00}}
	cmds := []string{"00A4040000", "80CA006600", "00A40400 00", "80F2400002 4F00 00", "84E2000000", "00A4040000"}
	s, err := ParseScript(cmds, false)
	if err != nil {
		t.Fatal(err)
	}
	out := s.Run(&scriptedCard{answers: answers})
	if out.Executed() != 5 {
		t.Fatalf("executed %d commands, want 5 (stop after 6982)", out.Executed())
	}
	if got := out.HexResponses()[1]; got != "016110" {
		t.Errorf("response 1 = %s, want uppercase hex 016110", got)
	}
	s.ContinueOnError = true
	if out := s.Run(&scriptedCard{answers: answers}); out.Executed() != 6 {
		t.Errorf("continueOnError executed %d commands, want 6", out.Executed())
	}
	s2, _ := ParseScript(nil, false)
	if out := s2.Run(&scriptedCard{}); out.HexResponses() == nil || out.Executed() != 0 {
		t.Errorf("empty script: responses must be an empty, non-nil list")
	}
}

func TestParseScriptNamesTheBadCommandNotItsContent(t *testing.T) {
	_, err := ParseScript([]string{"00A4040000", "84E2SECRET00"}, false)
	if !errors.Is(err, ErrBadScript) || !strings.Contains(err.Error(), "command 1") || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error %v", err)
	}
	if _, err := ParseScript([]string{""}, false); !errors.Is(err, ErrBadScript) {
		t.Errorf("empty command accepted")
	}
}

func TestCounters(t *testing.T) {
	var c Counters
	c.RecordScript("s1", 3)
	c.RecordAPDU()
	c.RecordScript("s2", 0)
	if c.APDUsExecuted != 4 || c.ScriptsExecuted != 2 || c.LastScriptID != "s2" {
		t.Errorf("counters %+v", c)
	}
}
