package spclient

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
)

func hx(t testing.TB, s string) []byte {
	t.Helper()
	b, err := apdu.DecodeHex(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func rep(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

var (
	testCIN   = []byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A}
	testSPSD  = []byte{0xA0, 0x00, 0x00, 0x05, 0x55, 0xAA, 0x01}
	spMaster  = []byte("sp-master-key-16")
	issuerKey = []byte("issuer-master-16")
)

// newCard manufactures a simulated card with a pre-issued SP SD whose keys are
// diversified from spMaster, and selects that SD.
func newCard(t *testing.T) *card.Card {
	t.Helper()
	c, err := card.Manufacture(card.ManufactureSpec{CIN: testCIN, Config: card.Embedded, IssuerMasterKey: issuerKey,
		PreIssuedSPDomains: []card.PreIssuedSD{{AID: testSPSD, MasterKey: spMaster}}})
	if err != nil {
		t.Fatal(err)
	}
	sel := apdu.Command{CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x00, Data: testSPSD, Le: 0}
	if r := mustResp(t, c.Transmit(sel.Bytes())); r.SW != apdu.SWOK {
		t.Fatalf("SELECT SP SD: %04X", r.SW)
	}
	return c
}

func mustResp(t *testing.T, b []byte) apdu.Response {
	t.Helper()
	r, err := apdu.ParseResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// open runs INITIALIZE UPDATE and EXTERNAL AUTHENTICATE against c.
func open(t *testing.T, c *card.Card, sc *SecureChannel, kvn, level byte) {
	t.Helper()
	iu, err := sc.InitializeUpdate(kvn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.ProcessInitializeUpdateResponse(c.Transmit(iu)); err != nil {
		t.Fatal(err)
	}
	ea, err := sc.ExternalAuthenticate(level)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckExternalAuthenticateResponse(c.Transmit(ea)); err != nil {
		t.Fatal(err)
	}
}

func TestKeysFromMasterMatchesCardFactory(t *testing.T) {
	kdd := card.KDDFromCIN(testCIN)
	for _, n := range []int{16, 24, 32} {
		master := rep(0x5A, n)
		got, err := KeysFromMaster(master, kdd)
		if err != nil {
			t.Fatal(err)
		}
		enc, mac, dek, err := card.DeriveSCP03Keys(master, kdd)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.ENC, enc) || !bytes.Equal(got.MAC, mac) || !bytes.Equal(got.DEK, dek) {
			t.Errorf("AES-%d: keys differ from the card factory's", 8*n)
		}
	}
}

// The KDF3 vector of gp-card.md 3.2 (external vector, AES-256 master).
func TestKeysFromMasterVector(t *testing.T) {
	k, err := KeysFromMaster(hx(t, "8C72C72CF908411653018807950D82FBAD947562F0828A0B10B8B9606ABF3BCD"), hx(t, "D9B1DE5D0362DEDCE4FB"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "9AAC5D0B3601F89438A0D9D0B6B256CFB47E6462DFA5228D3420C4AC7C224781"; strings.ToUpper(hex.EncodeToString(k.ENC)) != want {
		t.Errorf("ENC = %X, want %s", k.ENC, want)
	}
}

// The PUT KEY vector of gp-card.md 3.1.
func TestPutKeyDataVector(t *testing.T) {
	dek := hx(t, "202122232425262728292A2B2C2D2E2F")
	data, expect, err := putKeyData(func(k []byte) ([]byte, error) { return scp03.EncryptKey(dek, k) }, 0x2A,
		scp03.StaticKeys{ENC: rep(0x11, 16), MAC: rep(0x22, 16), DEK: rep(0x33, 16)})
	if err != nil {
		t.Fatal(err)
	}
	want := hx(t, "2A88111069EF0C06CA2299DE5E0EE0B9654C35D7030985428811107DB08C82905D0FE08EE48E9247A89CDC03C655918811103676D9722B8DACAC4B8FF1AA0377054F035F8AF9")
	if !bytes.Equal(data, want) {
		t.Errorf("data\n got %X\nwant %X", data, want)
	}
	if w := hx(t, "2A098542C655915F8AF9"); !bytes.Equal(expect, w) {
		t.Errorf("expected response %X, want %X", expect, w)
	}
	if _, _, err := putKeyData(func(k []byte) ([]byte, error) { return k, nil }, 0x80, scp03.StaticKeys{}); err == nil {
		t.Error("KVN 80 accepted")
	}
}

func TestNewSecureChannelChecksKeys(t *testing.T) {
	for name, cfg := range map[string]SecureChannelConfig{
		"nothing":    {},
		"both":       {Keys: &scp03.StaticKeys{ENC: rep(1, 16), MAC: rep(2, 16), DEK: rep(3, 16)}, MasterKey: rep(1, 16)},
		"short key":  {Keys: &scp03.StaticKeys{ENC: rep(1, 15), MAC: rep(2, 15), DEK: rep(3, 16)}},
		"no DEK":     {Keys: &scp03.StaticKeys{ENC: rep(1, 16), MAC: rep(2, 16)}},
		"master 17":  {MasterKey: rep(1, 17)},
		"channel 20": {MasterKey: rep(1, 16), Channel: 20},
	} {
		if _, err := NewSecureChannel(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A whole SP session against the simulated card: master-key diversification
// over the returned KDD, level 33, several commands wrapped before any
// response is unwrapped (as in one script), and a key rotation with PUT KEY
// after which the new static keys open a session and the old ones do not.
func TestSecureChannelAgainstCard(t *testing.T) {
	c := newCard(t)
	sc, err := NewSecureChannel(SecureChannelConfig{MasterKey: spMaster, SDAID: testSPSD})
	if err != nil {
		t.Fatal(err)
	}
	iuCmd, err := sc.InitializeUpdate(card.KVNIssuer)
	if err != nil {
		t.Fatal(err)
	}
	iu, err := sc.ProcessInitializeUpdateResponse(c.Transmit(iuCmd))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(iu.KDD, card.KDDFromCIN(testCIN)) || iu.KVN != card.KVNIssuer {
		t.Fatalf("KDD %X KVN %02X", iu.KDD, iu.KVN)
	}
	ea, err := sc.ExternalAuthenticate(scp03.LevelCDecCMACRMACRE)
	if err != nil {
		t.Fatal(err)
	}
	// The script of the next round trip: EXTERNAL AUTHENTICATE and two
	// wrapped commands, all built before any response is seen.
	getStatus := hx(t, "80F24002024F0000")
	getData := hx(t, "80CA006600")
	w1, err := sc.Wrap(getStatus)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := sc.Wrap(getData)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckExternalAuthenticateResponse(c.Transmit(ea)); err != nil {
		t.Fatal(err)
	}
	r1, r2 := c.Transmit(w1.Command), c.Transmit(w2.Command)
	for i, x := range []struct {
		w *Wrapped
		r []byte
	}{{w1, r1}, {w2, r2}} {
		u, err := sc.Unwrap(x.w, x.r)
		if err != nil {
			t.Fatalf("unwrap %d: %v", i+1, err)
		}
		if u.SW != apdu.SWOK || len(u.Data) == 0 || !u.RMACVerified || !u.Decrypted {
			t.Fatalf("command %d: SW %04X, %d data bytes, R-MAC %v, decrypted %v", i+1, u.SW, len(u.Data), u.RMACVerified, u.Decrypted)
		}
	}
	// GET STATUS answers the SP SD's own entry (tag 4F = its AID).
	if u, _ := sc.Unwrap(w1, r1); !bytes.Contains(u.Data, append([]byte{0x4F, byte(len(testSPSD))}, testSPSD...)) {
		t.Errorf("GET STATUS plain data %X lacks the SD AID", u.Data)
	}
	// A tampered response fails the R-MAC check, and so does a response
	// unwrapped with another command's chaining value.
	bad := append([]byte(nil), r2...)
	bad[0] ^= 0x01
	if _, err := sc.Unwrap(w2, bad); !errors.Is(err, scp03.ErrRMAC) {
		t.Errorf("tampered response: %v, want ErrRMAC", err)
	}
	if _, err := sc.Unwrap(w2, r1); !errors.Is(err, scp03.ErrRMAC) {
		t.Errorf("response 1 with command 2's state: %v, want ErrRMAC", err)
	}

	// Key rotation: replace key set 30 by 31 with fresh keys.
	newKeys := scp03.StaticKeys{ENC: rep(0xA1, 16), MAC: rep(0xB2, 16), DEK: rep(0xC3, 16)}
	plain, expect, err := sc.PutKey(card.KVNIssuer, 0x31, newKeys)
	if err != nil {
		t.Fatal(err)
	}
	wk, err := sc.Wrap(plain)
	if err != nil {
		t.Fatal(err)
	}
	u, err := sc.Unwrap(wk, c.Transmit(wk.Command))
	if err != nil {
		t.Fatal(err)
	}
	if u.SW != apdu.SWOK || !bytes.Equal(u.Data, expect) {
		t.Fatalf("PUT KEY: SW %04X data %X, want %X", u.SW, u.Data, expect)
	}

	// The new keys open a session; the master-derived ones no longer do.
	withNew, err := NewSecureChannel(SecureChannelConfig{Keys: &newKeys})
	if err != nil {
		t.Fatal(err)
	}
	open(t, c, withNew, 0x31, scp03.LevelCMACRMAC)
	stale, _ := NewSecureChannel(SecureChannelConfig{MasterKey: spMaster})
	iuCmd, _ = stale.InitializeUpdate(0)
	if _, err := stale.ProcessInitializeUpdateResponse(c.Transmit(iuCmd)); err == nil || !errors.Is(err, scp03.ErrCardCryptogram) {
		t.Errorf("old keys after rotation: %v, want a card cryptogram mismatch", err)
	}
}

func TestSecureChannelStateErrors(t *testing.T) {
	sc, err := NewSecureChannel(SecureChannelConfig{MasterKey: spMaster})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.ExternalAuthenticate(0x01); err == nil {
		t.Error("EXTERNAL AUTHENTICATE before INITIALIZE UPDATE accepted")
	}
	if _, err := sc.Wrap(hx(t, "80CA006600")); err == nil {
		t.Error("wrap before authentication accepted")
	}
	if _, err := sc.ProcessInitializeUpdateResponse(hx(t, "9000")); err == nil {
		t.Error("response without INITIALIZE UPDATE accepted")
	}
	if _, err := sc.InitializeUpdate(0x30); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.ProcessInitializeUpdateResponse(hx(t, "6A88")); err == nil || !strings.Contains(err.Error(), "6A88") {
		t.Errorf("error SW: %v", err)
	}
	if err := CheckExternalAuthenticateResponse(hx(t, "6300")); err == nil {
		t.Error("6300 accepted")
	}
}
