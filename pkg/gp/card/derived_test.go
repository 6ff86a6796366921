package card

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/internal/testvectors"
)

// Card-side known-answer tests from shared/testdata/gp-derived.json
// (self-computed regression values, testdata README): the card itself must
// produce the file's PUT KEY response, accept the file's DM token and
// produce the file's DELETE receipt, and verify the file's AES DAP block.

type derivedFile struct {
	APDUs []struct {
		Name string `json:"name"`
		APDU string `json:"apdu"`
	} `json:"apdus"`
	PutKey struct {
		DEK    string `json:"static_dek"`
		NewKVN string `json:"new_kvn"`
		Keys   []struct {
			ID  string `json:"key_id"`
			Key string `json:"key"`
		} `json:"keys"`
		CommandAPDU  string `json:"command_apdu_plain"`
		ResponseData string `json:"expected_response_data"`
		SW           string `json:"sw"`
	} `json:"put_key_scp03"`
	DAP struct {
		LFDB  string `json:"lfdb"`
		Hash  string `json:"lfdbh_sha256"`
		Key   string `json:"dap_key"`
		SD    string `json:"verifying_sd_aid"`
		Block string `json:"dap_block"`
	} `json:"dap_aes"`
	Token struct {
		Key   string `json:"token_key"`
		Token string `json:"token"`
		APDU  string `json:"delete_apdu_with_token"`
	} `json:"dm_token_aes_delete"`
	Receipt struct {
		Key      string `json:"receipt_key"`
		Counter  string `json:"confirmation_counter"`
		SDUnique string `json:"sd_unique_data"`
		Response string `json:"delete_response_data"`
		SW       string `json:"sw"`
	} `json:"receipt_aes_delete"`
}

func loadDerived(t testing.TB) derivedFile {
	t.Helper()
	var f derivedFile
	testvectors.JSON(t, "gp-derived.json", &f)
	return f
}

func (f derivedFile) apdu(t testing.TB, name string) string {
	t.Helper()
	for _, a := range f.APDUs {
		if a.Name == name {
			return a.APDU
		}
	}
	t.Fatalf("gp-derived.json has no APDU %q", name)
	return ""
}

func sw16(t testing.TB, s string) uint16 {
	t.Helper()
	b := hx(t, s)
	if len(b) != 2 {
		t.Fatalf("bad status word %q", s)
	}
	return uint16(b[0])<<8 | uint16(b[1])
}

// TestDerivedPutKeyOnCard runs the file's PUT KEY inside an SCP03 session
// whose static DEK is the file's, at each level that protects it, and
// compares the card's response with the file's. The new key set then opens
// a session of its own.
func TestDerivedPutKeyOnCard(t *testing.T) {
	f := loadDerived(t).PutKey
	enc, mac := bytes.Repeat([]byte{0x40}, 16), bytes.Repeat([]byte{0x41}, 16)
	dek := hx(t, f.DEK)
	for _, level := range []byte{0x01, 0x03, 0x13, 0x33} {
		c := newCard(t, Embedded)
		// Replace the factory KVN 30 set of the ISD: the file's DEK is the
		// static DEK of the session's key set (Amd D 7.2).
		if err := c.PutKeySet(ISDAID, SCP03Keys(KVNIssuer, enc, mac, dek)); err != nil {
			t.Fatal(err)
		}
		h := openSCP03(t, c, 0, KVNIssuer, enc, mac, dek, level)
		resp, s := h.send(hx(t, f.CommandAPDU))
		if s != sw16(t, f.SW) || up(resp) != f.ResponseData {
			t.Fatalf("level %02X: PUT KEY response %X %04X, want %s %s", level, resp, s, f.ResponseData, f.SW)
		}
		kvn := hx(t, f.NewKVN)[0]
		if len(f.Keys) != 3 {
			t.Fatalf("file has %d keys, want ENC, MAC, DEK", len(f.Keys))
		}
		openSCP03(t, c, 0, kvn, hx(t, f.Keys[0].Key), hx(t, f.Keys[1].Key), hx(t, f.Keys[2].Key), 0x03).must("80CA00E000", apdu.SWOK)
	}
}

// dmDeleteCard is a UICC3P card set up for the file's DM token and receipt:
// the Token Verification and Receipt Generation SD (MDPHSDAID) holds the
// file's token key, receipt key and SD unique data (tag 42 and 45 values);
// a DM SP SD A000000555AA01 under the central SD owns the instance
// A000000555010101, installed and extradited with the file's worked APDUs
// (through the AM central SD, so no receipt is generated before the test's
// own DELETE: the confirmation counter is still 0).
func dmDeleteCard(t *testing.T, f derivedFile) (*Card, *testHost) {
	t.Helper()
	c := newCard(t, UICC3P)
	unique := hx(t, f.Receipt.SDUnique)
	steps := []error{
		c.PutKeySet(MDPHSDAID, KeySet{KVN: KVNToken, Keys: []Key{{ID: 1, Type: KeyTypeAES, Value: hx(t, f.Token.Key)}}}),
		c.PutKeySet(MDPHSDAID, KeySet{KVN: KVNReceipt, Keys: []Key{{ID: 1, Type: KeyTypeAES, Value: hx(t, f.Receipt.Key)}}}),
		// 112233 || 4455667788: the file names the two values, 42 then 45.
		c.SetData(MDPHSDAID, "42", unique[:3]),
		c.SetData(MDPHSDAID, "45", unique[3:]),
	}
	spEnc, spMac, spDek := bytes.Repeat([]byte{0x51}, 16), bytes.Repeat([]byte{0x52}, 16), bytes.Repeat([]byte{0x53}, 16)
	spSD := hx(t, "A000000555AA01")
	steps = append(steps, c.AddSecurityDomain(spSD, CentralSDAID, PrivDelegatedManagement, nil, SCP03Keys(KVNIssuer, spEnc, spMac, spDek)))
	for _, err := range steps {
		if err != nil {
			t.Fatal(err)
		}
	}
	central := openIssuerSD(t, c, 0, CentralSDAID)
	central.must(f.apdu(t, "install_for_install_and_make_selectable"), apdu.SWOK)
	central.must(f.apdu(t, "install_for_extradition"), apdu.SWOK)
	selectAID(t, c, 0, spSD, "9000")
	return c, openSCP03(t, c, 0, KVNIssuer, spEnc, spMac, spDek, 0x33)
}

// TestDerivedDMTokenAndReceiptOnCard: the DM SD's DELETE of the file, with
// the file's token, is accepted and answered with the file's receipt
// response; the same APDU with one bit flipped (in the token, or in the
// signed AID) is rejected with 6982 and changes nothing, not even the
// confirmation counter.
func TestDerivedDMTokenAndReceiptOnCard(t *testing.T) {
	f := loadDerived(t)
	if f.Receipt.Counter != "0001" {
		t.Fatalf("file's confirmation counter %s: the card starts at 0 and this setup expects the first receipt", f.Receipt.Counter)
	}
	c, dm := dmDeleteCard(t, f)
	good := hx(t, f.Token.APDU)
	tokenAt := bytes.Index(good, hx(t, f.Token.Token))
	if tokenAt < 0 {
		t.Fatalf("token not in the DELETE APDU")
	}
	before := c.Registry()
	for _, bit := range []struct {
		name string
		at   int
	}{{"token", tokenAt + 7}, {"signed AID", 5 + 2 + 3}} {
		bad := clone(good)
		bad[bit.at] ^= 0x10
		if resp, s := dm.send(bad); s != apdu.SWSecurityNotSatisfied {
			t.Fatalf("DELETE with a flipped bit in the %s: %X %04X, want 6982", bit.name, resp, s)
		}
		if !reflect.DeepEqual(before, c.Registry()) {
			t.Fatalf("rejected DELETE (%s) changed the registry", bit.name)
		}
	}
	resp, s := dm.send(good)
	if s != sw16(t, f.Receipt.SW) || up(resp) != f.Receipt.Response {
		t.Fatalf("DELETE with token: %X %04X\nwant %s %s", resp, s, f.Receipt.Response, f.Receipt.SW)
	}
	for _, e := range c.Registry() {
		if bytes.Equal(e.AID, hx(t, "A000000555010101")) {
			t.Fatalf("instance still registered after DELETE")
		}
	}
}

// TestDerivedDAPOnCard loads the file's LFDB with the file's DAP block into
// the verifying SD (DAP Verification, so the DAP is mandatory there) and
// checks that the DAP verifies, and that one flipped bit of it fails with
// 6982 and loads nothing.
func TestDerivedDAPOnCard(t *testing.T) {
	f := loadDerived(t).DAP
	elf := hx(t, "A0000005550201")
	for _, tc := range []struct {
		name string
		flip int // byte of the DAP block to flip, -1 for none
		want uint16
	}{{"file's DAP", -1, apdu.SWOK}, {"flipped bit", len(hx(t, f.Block)) - 1, apdu.SWSecurityNotSatisfied}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCard(t, Embedded)
			va := hx(t, f.SD)
			if err := c.AddSecurityDomain(va, ISDAID, PrivDAPVerification, nil,
				KeySet{KVN: KVNDAP, Keys: []Key{{ID: 1, Type: KeyTypeAES, Value: hx(t, f.Key)}}}); err != nil {
				t.Fatal(err)
			}
			h := openIssuerSD(t, c, 0, ISDAID)
			block := hx(t, f.Block)
			if tc.flip >= 0 {
				block[tc.flip] ^= 0x01
			}
			file := append(block, 0xC4, byte(len(hx(t, f.LFDB))))
			file = append(file, hx(t, f.LFDB)...)
			h.must(up(cmdBytes(0x80, 0xE6, 0x02, 0x00, lvs(elf, va, hx(t, f.Hash), nil, nil), true)), apdu.SWOK)
			before := c.Registry()
			if _, s := h.send(cmdBytes(0x80, 0xE8, 0x80, 0x00, file, true)); s != tc.want {
				t.Fatalf("LOAD: SW %04X, want %04X", s, tc.want)
			}
			loaded := false
			for _, e := range c.Registry() {
				if bytes.Equal(e.AID, elf) {
					loaded = e.Kind == KindELF && bytes.Equal(e.SD, va)
				}
			}
			if loaded != (tc.want == apdu.SWOK) {
				t.Fatalf("ELF loaded %v after SW %04X", loaded, tc.want)
			}
			if tc.want != apdu.SWOK && !reflect.DeepEqual(before, c.Registry()) {
				t.Fatalf("failed LOAD changed the registry")
			}
		})
	}
}

// TestDMReceiptFailureIsAtomic: when the Receipt Generation SD cannot
// produce the receipt (confirmation counter at FFFF, GPC C.5, or no receipt
// key), the DM DELETE is rejected with 6985 before anything is deleted.
// FuzzInstallData found the card deleting (installing, moving) first and
// answering 6985 afterwards.
func TestDMReceiptFailureIsAtomic(t *testing.T) {
	f := loadDerived(t)
	for _, tc := range []struct {
		name  string
		spoil func(rg *entry)
	}{
		{"counter at FFFF", func(rg *entry) { rg.ConfirmationCounter = 0xFFFF }},
		{"no receipt key", func(rg *entry) {
			var kept []KeySet
			for _, ks := range rg.KeySets {
				if ks.KVN != KVNReceipt {
					kept = append(kept, ks)
				}
			}
			rg.KeySets = kept
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, dm := dmDeleteCard(t, f)
			rg := c.st.find(MDPHSDAID)
			tc.spoil(rg)
			counter := rg.ConfirmationCounter
			before := c.Registry()
			if resp, s := dm.send(hx(t, f.Token.APDU)); s != apdu.SWConditionsNotSatisfied {
				t.Fatalf("DELETE: %X %04X, want 6985", resp, s)
			}
			if !reflect.DeepEqual(before, c.Registry()) || rg.ConfirmationCounter != counter {
				t.Fatalf("DELETE rejected for its receipt but the registry or counter changed")
			}
		})
	}
}
