package card

import (
	"bytes"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/command"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/gp/scp02"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// TestSCP02PseudoRandomInterop opens SCP02 i=55 (pseudo-random challenge,
// GPC E.4.2.1) and i=15 with the shared scp02 host, at levels 01 and 03, and
// rotates DES keys with PUT KEY under the DEK session key.
func TestSCP02PseudoRandomInterop(t *testing.T) {
	for _, i := range []byte{0x55, 0x15} {
		c := newCard(t, Embedded)
		k := bytes.Repeat([]byte{0x40, 0x41}, 8)
		c.st.isd().KeySets = nil
		if err := c.PutKeySet(ISDAID, SCP02Keys(0x20, k, k, k)); err != nil {
			t.Fatal(err)
		}
		if err := c.SetSCPParameter(ISDAID, 2, i); err != nil {
			t.Fatal(err)
		}
		for _, level := range []byte{0x01, 0x03} {
			h, err := scp02.NewHost(scp02.StaticKeys{ENC: k, MAC: k, DEK: k}, scp02.HostOptions{I: i, AID: ISDAID, KVN: 0x20})
			if err != nil {
				t.Fatal(err)
			}
			iu, _ := h.InitializeUpdate(0x20, nil)
			if err := h.ProcessInitializeUpdateResponse(c.Transmit(iu)); err != nil {
				t.Fatalf("i=%02X INITIALIZE UPDATE: %v", i, err)
			}
			ea, err := h.ExternalAuthenticate(level)
			if err != nil {
				t.Fatal(err)
			}
			if r := c.Transmit(ea); up(r) != "9000" {
				t.Fatalf("i=%02X level %02X EXTERNAL AUTHENTICATE: %X", i, level, r)
			}
			w, _ := h.Wrap(hx(t, "80F28002024F0000"))
			d, sw, err := h.Unwrap(c.Transmit(w))
			if err != nil || sw != apdu.SWOK || !bytes.Contains(d, ISDAID) {
				t.Fatalf("GET STATUS over SCP02: %X %04X %v", d, sw, err)
			}
		}
		// The sequence counter advanced once per session (GPC E.4.1).
		c.Reset()
		resp := mustTransmit(t, c, "80CA00C100", "9000")
		if up(resp) != "C1020002" {
			t.Fatalf("sequence counter %X", resp)
		}
	}
}

// TestGetDataObjects checks the GET DATA objects of GPC 11.3 and the CLA
// 80/00 rule.
func TestGetDataObjects(t *testing.T) {
	c := newCard(t, UICC3P)
	if got := up(mustTransmit(t, c, "80CA004200", "9000")); got != "4203420001" {
		t.Fatalf("42: %s", got)
	}
	if got := up(mustTransmit(t, c, "00CA004500", "9000")); got != "0102030405060708090A" {
		t.Fatalf("45 (value only): %s", got)
	}
	// The ISD's SCP03 set (the gp-card.md 2.7 value), then its token (74)
	// and receipt (75) keys.
	if got := up(mustTransmit(t, c, "80CA00E000", "9000")); got != "E01EC00401308810C00402308810C00403308810C00401748810C00401758810" {
		t.Fatalf("E0: %s", got)
	}
	if got := mustTransmit(t, c, "80CA9F7F00", "9000"); len(got) != 45 || got[2] != 42 {
		t.Fatalf("CPLC: %X", got)
	}
	if got := up(mustTransmit(t, c, "80CA006600", "9000")); got != "6631732F06072A864886FC6B01600C060A2A864886FC6B02020301630906072A864886FC6B03640B06092A864886FC6B040370" {
		t.Fatalf("66: %s", got)
	}
	mustTransmit(t, c, "80CA006700", "9000")
	if got := up(mustTransmit(t, c, "80CA00D300", "9000")); got != "D30100" {
		t.Fatalf("D3 without session: %s", got)
	}
	fci := mustTransmit(t, c, "00A4040000", "9000")
	if !bytes.HasPrefix(fci, hx(t, "6F")) || !bytes.Contains(fci, hx(t, "8408A000000151000000")) || !bytes.HasSuffix(fci, hx(t, "9F6501FF")) {
		t.Fatalf("FCI %X", fci)
	}
	h := openIssuerSD(t, c, 0, MDPHSDAID)
	if got := up(h.must("80CA00D300", apdu.SWOK)); got != "D30133" {
		t.Fatalf("D3: %s", got)
	}
	if got := up(h.must("80CA00C200", apdu.SWOK)); got != "C2020000" {
		t.Fatalf("C2: %s", got)
	}
	if got := up(h.must("80CA00C100", apdu.SWOK)); got != "C103000001" {
		t.Fatalf("C1: %s", got)
	}
}

// TestDGIKeyLoading loads the first keys of a new SD with STORE DATA DGI
// 00B9 + 8113 through its associated SD (GPC 11.11.4.1).
func TestDGIKeyLoading(t *testing.T) {
	c := newCard(t, UICC)
	h := openIssuerSD(t, c, 0, CentralSDAID)
	_, _, dek := issuerKeys(t, c, CentralSDAID)
	sd := hxs("A000000555CC01")
	h.must(up(cmdBytes(0x80, 0xE6, 0x0C, 0x00, lvs(SSDPackageAID, SSDModuleAID, sd, hxs("800000"), hxs("C900"), nil), true)), apdu.SWOK)
	h.must(up(cmdBytes(0x80, 0xE6, 0x20, 0x00, lvs(nil, nil, sd, nil, nil), true)), apdu.SWOK)
	key := bytes.Repeat([]byte{0x42}, 16)
	kcv, _ := gpcrypto.AESKCV(key)
	var crts, blocks []byte
	for id := byte(1); id <= 3; id++ {
		crts = append(crts, tlv.Encode(0xB9, append(append(append(append(tlv.Encode(0x95, []byte{0x18}), tlv.Encode(0x80, []byte{KeyTypeAES})...), tlv.Encode(0x81, []byte{16})...), tlv.Encode(0x82, []byte{id})...), append(tlv.Encode(0x83, []byte{0x30}), tlv.Encode(0x84, kcv)...)...))...)
		enc, _ := gpcrypto.AESCBCEncrypt(dek, nil, key)
		blocks = append(blocks, append([]byte{0x81, 0x13, byte(len(enc))}, enc...)...)
	}
	data := append(append([]byte{0x00, 0xB9, byte(len(crts))}, crts...), blocks...)
	// Wrong KCV first: 6982 and nothing loaded.
	bad := bytes.Clone(data)
	bad[3+len(crts)-1] ^= 1
	h.must(up(cmdBytes(0x80, 0xE2, 0x88, 0x00, bad, false)), apdu.SWSecurityNotSatisfied)
	h.must(up(cmdBytes(0x80, 0xE2, 0x88, 0x00, data, false)), apdu.SWOK)
	selectAID(t, c, 0, sd, "9000")
	openSCP03(t, c, 0, 0x30, key, key, key, 0x03)
	for _, e := range c.Registry() {
		if bytes.Equal(e.AID, sd) && e.LifeCycle != LCPersonalized {
			t.Fatalf("SD state %02X", e.LifeCycle)
		}
	}
	// Parsing the registry with the shared GET STATUS parser.
	h = openIssuerSD(t, c, 0, CentralSDAID)
	entries, err := command.ParseStatusResponse(h.must("80F24002024F0000", apdu.SWOK))
	if err != nil || len(entries) != 2 {
		t.Fatalf("GET STATUS: %v %+v", err, entries)
	}
}
