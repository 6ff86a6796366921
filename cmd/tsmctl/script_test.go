package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
	"github.com/tsmhub/tsmhub/pkg/spclient"
)

const (
	keyA = "404142434445464748494A4B4C4D4E4F"
	keyB = "505152535455565758595A5B5C5D5E5F"
	keyC = "606162636465666768696A6B6C6D6E6F"
)

func mustParse(t *testing.T, text string) *script {
	t.Helper()
	sc, err := parseScript("s.txt", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestParseEveryDirective(t *testing.T) {
	sc := mustParse(t, `# a comment
00A4040008 A000000151000000 00

select A000000555AA01   # trailing comment
initialize-update
initialize-update 31
external-authenticate
external-authenticate 33
secure 80CA006600
get-status 40
store-data DF01 03 010203
put-key 30 31 `+keyA+":"+keyB+":"+keyC+`
SELECT a0000001510000
`)
	want := []struct {
		kind    stepKind
		line    int
		apdu    string
		display string
	}{
		{stepRaw, 2, "00A4040008A00000015100000000", "00A4040008A00000015100000000"},
		{stepSelect, 4, "00A4040007A000000555AA0100", "select A000000555AA01"},
		{stepInitUpdate, 5, "", "initialize-update"},
		{stepInitUpdate, 6, "", "initialize-update 31"},
		{stepExtAuth, 7, "", "external-authenticate"},
		{stepExtAuth, 8, "", "external-authenticate 33"},
		{stepSecure, 9, "80CA006600", "secure 80CA006600"},
		{stepGetStatus, 10, "80F24002024F0000", "get-status 40"},
		{stepStoreData, 11, "80E2800006DF0103010203", "store-data (6 bytes)"},
		{stepPutKey, 12, "", "put-key 30 -> 31 (3 AES-128 keys)"},
		{stepSelect, 13, "00A4040007A000000151000000", "select A0000001510000"},
	}
	if len(sc.Steps) != len(want) {
		t.Fatalf("%d steps, want %d", len(sc.Steps), len(want))
	}
	for i, w := range want {
		st := sc.Steps[i]
		if st.Kind != w.kind || st.Line != w.line || upper(st.APDU) != w.apdu || st.Display != w.display {
			t.Errorf("step %d: kind %d line %d apdu %s display %q; want %+v", i, st.Kind, st.Line, upper(st.APDU), st.Display, w)
		}
	}
	if st := sc.Steps[3]; !st.HasKVN || st.KVN != 0x31 || sc.Steps[2].HasKVN {
		t.Errorf("kvn: %+v", st)
	}
	if st := sc.Steps[5]; !st.HasLevel || st.Level != 0x33 || sc.Steps[4].HasLevel {
		t.Errorf("level: %+v", st)
	}
	if st := sc.Steps[9]; st.OldKVN != 0x30 || st.NewKVN != 0x31 || upper(st.Keys.MAC) != keyB {
		t.Errorf("put-key: %02X %02X", st.OldKVN, st.NewKVN)
	}
	for _, st := range sc.Steps {
		if strings.Contains(st.Display, keyA) || strings.Contains(st.Display, keyB) {
			t.Errorf("display %q shows key material", st.Display)
		}
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	text := strings.Join([]string{
		"select A0",                // 1: AID too short
		"selct A000000151000000",   // 2: unknown directive
		"00A40400",                 // 3: fine (case 1)
		"00A4040008A0000001",       // 4: Lc mismatch
		"initialize-update 80",     // 5: kvn > 7F
		"external-authenticate 02", // 6: bad level
		"get-status 41",            // 7: bad P1
		"put-key 30 31 " + keyA,    // 8: one key only
		"secure zz",                // 9: not hex
		"store-data",               // 10: no data
		"put-key 30 31 " + keyA + ":" + keyB + ":0102", // 11: short key
		"00A404000", // 12: odd hex
	}, "\n")
	_, err := parseScript("bad.txt", strings.NewReader(text))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, line := range []string{"1", "2", "4", "5", "6", "7", "8", "9", "10", "11", "12"} {
		if !strings.Contains(msg, "bad.txt:"+line+":") {
			t.Errorf("no error for line %s in:\n%s", line, msg)
		}
	}
	if strings.Contains(msg, "bad.txt:3:") {
		t.Errorf("line 3 is valid:\n%s", msg)
	}
	if strings.Contains(msg, keyA) || strings.Contains(msg, keyB) {
		t.Errorf("error shows key material:\n%s", msg)
	}
	if _, err := parseScript("empty.txt", strings.NewReader("# nothing\n\n")); err == nil {
		t.Error("empty script accepted")
	}
}

func TestCheckOrder(t *testing.T) {
	s1 := mustParse(t, "select A000000555AA01\ninitialize-update\n")
	s2 := mustParse(t, "external-authenticate 33\nget-status 40\n")
	if err := checkOrder([]*script{s1, s2}, true); err != nil {
		t.Errorf("walkthrough order rejected: %v", err)
	}
	same := mustParse(t, "initialize-update\nexternal-authenticate\n")
	if err := checkOrder([]*script{same}, true); err == nil || !strings.Contains(err.Error(), "later --script") {
		t.Errorf("EXTERNAL AUTHENTICATE in the INITIALIZE UPDATE script: %v", err)
	}
	if err := checkOrder([]*script{s2}, true); err == nil || !strings.Contains(err.Error(), "s.txt:1") {
		t.Errorf("EXTERNAL AUTHENTICATE without INITIALIZE UPDATE: %v", err)
	}
	secureFirst := mustParse(t, "secure 80CA006600\n")
	if err := checkOrder([]*script{s1, secureFirst}, true); err == nil {
		t.Error("secure before EXTERNAL AUTHENTICATE accepted")
	}
	if err := checkOrder([]*script{s1, s2}, false); err == nil || !strings.Contains(err.Error(), "--sd-master-key") {
		t.Errorf("directives without keys: %v", err)
	}
	raw := mustParse(t, "00A4040007A000000555AA0100\n")
	if err := checkOrder([]*script{raw}, false); err != nil {
		t.Errorf("raw APDUs need no keys: %v", err)
	}
}

// Resolving scripts against the simulated card, one script at a time as
// converse does: the walkthrough of initialize-update in script 1 and
// external-authenticate, secured commands and a key rotation in script 2.
func TestSessionAgainstCard(t *testing.T) {
	cin := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	sd := []byte{0xA0, 0x00, 0x00, 0x05, 0x55, 0xAA, 0x01}
	master := bytes.Repeat([]byte{0x42}, 16)
	c, err := card.Manufacture(card.ManufactureSpec{CIN: cin, Config: card.UICC, IssuerMasterKey: bytes.Repeat([]byte{7}, 16),
		PreIssuedSPDomains: []card.PreIssuedSD{{AID: sd, MasterKey: master}}})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := spclient.NewSecureChannel(spclient.SecureChannelConfig{MasterKey: master})
	if err != nil {
		t.Fatal(err)
	}
	s := &session{channel: ch, kvn: 0x30, level: 0x03}
	scripts := []*script{
		mustParse(t, "select A000000555AA01\ninitialize-update\n"),
		mustParse(t, "external-authenticate 33\nget-status 40\nstore-data DF0103010203\nput-key 30 31 "+keyA+":"+keyB+":"+keyC+"\n"),
	}
	var notes []string
	for _, sc := range scripts {
		plan, err := s.resolve(sc)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range plan {
			rapdu := c.Transmit(p.Command)
			r, _ := apdu.ParseResponse(rapdu)
			if r.SW != apdu.SWOK {
				t.Fatalf("%s: SW %04X", p.Step.Display, r.SW)
			}
			n, err := s.check(p, rapdu)
			if err != nil {
				t.Fatalf("%s: %v", p.Step.Display, err)
			}
			notes = append(notes, n...)
		}
	}
	all := strings.Join(notes, "\n")
	for _, want := range []string{"card cryptogram ok: KVN 30", "session open at level 33", "R-MAC ok, decrypted", "key check values ok"} {
		if !strings.Contains(all, want) {
			t.Errorf("notes lack %q:\n%s", want, all)
		}
	}
	// The rotated keys open the next session.
	keys, _ := parseKeyTriple(keyA + ":" + keyB + ":" + keyC)
	ch2, _ := spclient.NewSecureChannel(spclient.SecureChannelConfig{Keys: &keys})
	s2 := &session{channel: ch2, kvn: 0x31, level: 0x01}
	plan, _ := s2.resolve(mustParse(t, "initialize-update\n"))
	if _, err := s2.check(plan[0], c.Transmit(plan[0].Command)); err != nil {
		t.Errorf("session with the rotated keys: %v", err)
	}
	// A response that does not verify is reported.
	plan, _ = s2.resolve(mustParse(t, "external-authenticate 11\nsecure 80CA006600\n"))
	c.Transmit(plan[0].Command)
	bad := c.Transmit(plan[1].Command)
	bad[0] ^= 1
	if _, err := s2.check(plan[1], bad); !errors.Is(err, scp03.ErrRMAC) {
		t.Errorf("tampered response: %v", err)
	}
}
