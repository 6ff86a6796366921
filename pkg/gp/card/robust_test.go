package card

import (
	"bytes"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// TestPersistenceMidSession marshals a card in the middle of a secure
// channel session and continues it on the restored card.
func TestPersistenceMidSession(t *testing.T) {
	c := newCard(t, UICC)
	mustTransmit(t, c, "0070000100", "9000")
	h := openIssuerSD(t, c, 1, CentralSDAID)
	h.must("81CA00E000", apdu.SWOK)
	h.must(up(cmdBytes(0x81, 0xE6, 0x20, 0x00, lvs(nil, nil, TelecomAppletAID, nil, nil), true)), apdu.SWReferencedDataNotFound)
	blob, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Restore(blob)
	if err != nil {
		t.Fatal(err)
	}
	if c2.ExecutionCount() != c.ExecutionCount() || !bytes.Equal(c2.CIN(), c.CIN()) {
		t.Fatalf("restored counters/CIN differ")
	}
	h.c = c2
	// The next secured command (MAC chain, encryption counter, R-MAC) works.
	d := h.must("81F24002024F0000", apdu.SWOK)
	if _, ok := parseStatus(t, d)[up(CentralSDAID)]; !ok {
		t.Fatalf("GET STATUS after restore: %X", d)
	}
	// And the original card, replaying the same command, is independent.
	var c3 Card
	if err := c3.UnmarshalBinary(blob); err != nil {
		t.Fatal(err)
	}
	again, _ := c2.MarshalBinary()
	if bytes.Equal(again, blob) {
		t.Fatalf("state did not change after a command")
	}
	if err := c3.UnmarshalBinary([]byte("{")); err == nil {
		t.Fatalf("bad state accepted")
	}
	// Reset ends the session and closes channel 1.
	c2.Reset()
	mustTransmit(t, c2, "01CA004200", "6881")
	mustTransmit(t, c2, "80F24002024F0000", "6982")
}

// TestHostileAPDUs: malformed and hostile commands get the right status
// word, never a panic, and leave the registry as it was.
func TestHostileAPDUs(t *testing.T) {
	c := newCard(t, Embedded3P)
	before := c.Registry()
	plain := []struct{ name, apdu, sw string }{
		{"empty-ish", "80", "6700"},
		{"header only 3", "80CA00", "6700"},
		{"Lc too long", "80CA00420A0102", "6700"},
		{"Lc too short", "80E6020003010203040506", "6700"},
		{"bad CLA FF", "FFA4040000", "6E00"},
		{"bad CLA 20", "20A4040000", "6E00"},
		{"channel 5", "41A4040000", "6881"},
		{"closed channel", "03A4040000", "6881"},
		{"unknown INS", "80AA000000", "6D00"},
		{"ISO INS unknown", "00AA000000", "6D00"},
		{"GP INS with ISO CLA", "00F2400002", "6E00"},
		{"SELECT P1", "00A4000000", "6A86"},
		{"SELECT P2", "00A4040C00", "6A86"},
		{"SELECT unknown", "00A4040005A00000099900", "6A82"},
		{"SELECT too long", "00A4040011" + "A0000000000000000000000000000000000000", "6700"},
		{"SELECT ELF", "00A4040006A0000005550100", "6A82"},
		{"MANAGE CHANNEL P1", "0070400000", "6A86"},
		{"close channel 0", "0070800000", "6A86"},
		{"close closed channel", "0070800300", "6200"},
		{"MANAGE CHANNEL with data", "007000000101", "6700"},
		{"GET DATA unknown", "80CA00FE00", "6A88"},
		{"GET STATUS plain", "80F24002024F0000", "6982"},
		{"INSTALL plain", "80E60C000100", "6982"},
		{"secured without session", "84F240020A4F000102030405060708", "6982"},
		{"EXTERNAL AUTH without INIT", "84820100100102030405060708090A0B0C0D0E0F10", "6985"},
		{"EXTERNAL AUTH plain CLA", "80820100100102030405060708090A0B0C0D0E0F10", "6982"},
		{"INIT UPDATE short", "8050000004010203040500", "6700"},
		{"INIT UPDATE P2", "80500001080102030405060708", "6A86"},
		{"INIT UPDATE bad KVN", "80507700080102030405060708", "6A88"},
		{"INIT UPDATE secured CLA", "84500000080102030405060708", "6E00"},
		{"GET RESPONSE nothing", "00C0000000", "6985"},
	}
	for _, tc := range plain {
		resp := c.Transmit(hx(t, tc.apdu))
		if got := up(resp[len(resp)-2:]); got != tc.sw {
			t.Errorf("%s (%s): SW %s, want %s", tc.name, tc.apdu, got, tc.sw)
		}
	}
	if len(c.Transmit(nil)) != 2 {
		t.Fatalf("empty APDU")
	}
	h := openIssuerSD(t, c, 0, CentralSDAID)
	_, _, dek := issuerKeys(t, c, CentralSDAID)
	secured := []struct {
		name string
		cmd  []byte
		sw   uint16
	}{
		{"GET STATUS bad P1", cmdBytes(0x80, 0xF2, 0x41, 0x02, hxs("4F00"), true), apdu.SWIncorrectP1P2},
		{"GET STATUS no 4F", cmdBytes(0x80, 0xF2, 0x40, 0x02, hxs("5C014F"), true), apdu.SWIncorrectData},
		{"GET STATUS oversized TLV length", cmdBytes(0x80, 0xF2, 0x40, 0x02, hxs("4F82FFFF00"), true), apdu.SWIncorrectData},
		{"GET STATUS next without 6310", cmdBytes(0x80, 0xF2, 0x40, 0x03, hxs("4F00"), true), apdu.SWConditionsNotSatisfied},
		{"INSTALL bad P1", cmdBytes(0x80, 0xE6, 0x03, 0x00, hxs("00"), true), apdu.SWIncorrectP1P2},
		{"INSTALL truncated LV", cmdBytes(0x80, 0xE6, 0x0C, 0x00, hxs("06A00000055501"), true), apdu.SWIncorrectData},
		{"INSTALL oversized LV length", cmdBytes(0x80, 0xE6, 0x0C, 0x00, hxs("82FFFF"), true), apdu.SWIncorrectData},
		{"INSTALL for perso unknown", cmdBytes(0x80, 0xE6, 0x20, 0x00, lvs(nil, nil, hxs("A000000999"), nil, nil), true), apdu.SWReferencedDataNotFound},
		{"LOAD without INSTALL", cmdBytes(0x80, 0xE8, 0x00, 0x00, hxs("C40100"), true), apdu.SWConditionsNotSatisfied},
		{"DELETE bad P2", cmdBytes(0x80, 0xE4, 0x00, 0x01, hxs("4F05A000000999"), true), apdu.SWIncorrectP1P2},
		{"DELETE unknown", cmdBytes(0x80, 0xE4, 0x00, 0x00, hxs("4F05A000000999"), true), apdu.SWReferencedDataNotFound},
		{"DELETE self", cmdBytes(0x80, 0xE4, 0x00, 0x00, tlv.Encode(0x4F, CentralSDAID), true), apdu.SWReferencedDataNotFound},
		{"DELETE bad tag", cmdBytes(0x80, 0xE4, 0x00, 0x00, hxs("5F0100"), true), apdu.SWIncorrectData},
		{"DELETE unknown key", cmdBytes(0x80, 0xE4, 0x00, 0x00, hxs("D00109D20109"), true), apdu.SWReferencedDataNotFound},
		{"SET STATUS unknown", cmdBytes(0x80, 0xF0, 0x40, 0x80, hxs("A000000999"), false), apdu.SWReferencedDataNotFound},
		{"SET STATUS bad P1", cmdBytes(0x80, 0xF0, 0x20, 0x80, hxs("A000000999"), false), apdu.SWIncorrectP1P2},
		{"PUT KEY wrong KCV", func() []byte {
			d := putKeyData(t, dek, 0x40, bytes.Repeat([]byte{7}, 16))
			d[len(d)-1] ^= 1
			return cmdBytes(0x80, 0xD8, 0x00, 0x01, d, true)
		}(), apdu.SWSecurityNotSatisfied},
		{"PUT KEY replace unknown", cmdBytes(0x80, 0xD8, 0x55, 0x81, putKeyData(t, dek, 0x56, bytes.Repeat([]byte{7}, 16)), true), apdu.SWReferencedDataNotFound},
		{"PUT KEY KVN 80", cmdBytes(0x80, 0xD8, 0x00, 0x81, putKeyData(t, dek, 0x80, bytes.Repeat([]byte{7}, 16)), true), apdu.SWIncorrectData},
		{"PUT KEY truncated", cmdBytes(0x80, 0xD8, 0x00, 0x81, hxs("4088111010"), true), apdu.SWIncorrectData},
		{"PUT KEY change size", cmdBytes(0x80, 0xD8, 0x30, 0x81, putKeyData(t, dek, 0x30, bytes.Repeat([]byte{7}, 32)), true), apdu.SWIncorrectData},
		{"STORE DATA out of order", cmdBytes(0x80, 0xE2, 0x90, 0x05, hxs("DF0100"), false), apdu.SWIncorrectP1P2},
		{"STORE DATA generated tag", cmdBytes(0x80, 0xE2, 0x90, 0x00, hxs("C10100"), false), apdu.SWIncorrectData},
		{"STORE DATA oversized TLV", cmdBytes(0x80, 0xE2, 0x90, 0x00, hxs("DF0182FFFF01"), false), apdu.SWIncorrectData},
	}
	for _, tc := range secured {
		if _, s := h.send(tc.cmd); s != tc.sw {
			t.Errorf("%s: SW %04X, want %04X", tc.name, s, tc.sw)
		}
	}
	// Out-of-order LOAD blocks abort the load.
	h.must(up(cmdBytes(0x80, 0xE6, 0x02, 0x00, lvs(hxs("A0000005558801"), nil, nil, nil, nil), true)), apdu.SWOK)
	h.must("80E8000003C40300", apdu.SWOK)
	h.must("80E8000201AA", apdu.SWIncorrectP1P2)
	h.must("80E8800101AA", apdu.SWConditionsNotSatisfied)
	if !bytes.Equal(mustMarshalRegistry(t, before), mustMarshalRegistry(t, c.Registry())) {
		t.Fatalf("hostile commands changed the registry")
	}
	// A replayed secured command (same C-MAC) aborts the session.
	w := h.wrap(hx(t, "80CA00E000"))
	if r := c.Transmit(w); up(r[len(r)-2:]) != "9000" {
		t.Fatalf("first send: %X", r)
	}
	if r := c.Transmit(w); up(r) != "6982" {
		t.Fatalf("replayed C-MAC: %X", r)
	}
	// After the abort even valid-looking commands are refused until a new
	// INITIALIZE UPDATE (Amd D 5.6).
	if r := c.Transmit(hx(t, "80CA004200")); up(r) != "6982" {
		t.Fatalf("plain GET DATA after abort: %X", r)
	}
	openIssuerSD(t, c, 0, CentralSDAID).must("80CA004200", apdu.SWOK)
}

func mustMarshalRegistry(t testing.TB, r []RegistryEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, e := range r {
		b.WriteString(up(e.AID) + e.Kind.String() + up([]byte{e.LifeCycle}) + e.Privileges.String() + up(e.SD) + up(e.KeyVersions) + "|")
	}
	return b.Bytes()
}

// TestChainingAndResponseChaining: a GP-chained PUT KEY (GPC 11.1.5.1) and
// a response longer than 256 bytes fetched with GET RESPONSE.
func TestChainingAndResponseChaining(t *testing.T) {
	c := newCard(t, Embedded)
	h := openIssuerSD(t, c, 0, ISDAID)
	_, _, dek := issuerKeys(t, c, ISDAID)
	keys := [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32), bytes.Repeat([]byte{4}, 32), bytes.Repeat([]byte{5}, 32), bytes.Repeat([]byte{6}, 32), bytes.Repeat([]byte{7}, 32)}
	data := putKeyData(t, dek, 0x41, keys...)
	if len(data) <= 255 {
		t.Fatalf("test data too short to chain: %d", len(data))
	}
	// Wrap the unsegmented command, then split it.
	full := h.wrap(cmdBytes(0x80, 0xD8, 0x00, 0x81, data, false))
	cmd, err := apdu.Parse(full)
	if err != nil {
		t.Fatal(err)
	}
	seg1 := apdu.Command{CLA: cmd.CLA, INS: 0xD8, P1: 0x80, P2: 0x81, Data: cmd.Data[:200], Le: apdu.LeAbsent}
	seg2 := apdu.Command{CLA: cmd.CLA, INS: 0xD8, P1: 0x00, P2: 0x81, Data: cmd.Data[200:], Le: 256}
	if r := c.Transmit(seg1.Bytes()); up(r) != "9000" {
		t.Fatalf("first segment: %X", r)
	}
	r := c.Transmit(seg2.Bytes())
	if up(r[len(r)-2:]) != "9000" {
		t.Fatalf("last segment: %X", r)
	}
	for _, e := range c.Registry() {
		if e.Kind == KindISD && !bytes.Contains(e.KeyVersions, []byte{0x41}) {
			t.Fatalf("chained PUT KEY did not add KVN 41: %X", e.KeyVersions)
		}
	}
	// Interrupted chain: another command in between -> 6985.
	seg1b := h.wrap(cmdBytes(0x80, 0xD8, 0x80, 0x81, []byte{1, 2, 3}, false))
	c.Transmit(seg1b)
	if r := c.Transmit(hx(t, "80CA004200")); up(r) != "6985" {
		t.Fatalf("broken chain: %X", r)
	}
	// Many apps: GET DATA 2F00 is longer than 256 bytes.
	h = openIssuerSD(t, c, 0, ISDAID)
	for i := 0; i < 30; i++ {
		h.send(installInstance(GenericELFAID, GenericModuleAID, []byte{0xA0, 0, 0, 5, 0x55, 1, 1, byte(i)}, "00"))
	}
	resp := c.Transmit(hx(t, "00CA2F0000"))
	var all []byte
	for i := 0; i < 10; i++ {
		n := len(resp)
		all = append(all, resp[:n-2]...)
		if resp[n-2] != 0x61 {
			if up(resp[n-2:]) != "9000" {
				t.Fatalf("GET DATA 2F00: %X", resp[n-2:])
			}
			break
		}
		resp = c.Transmit(hx(t, "00C0000000"))
	}
	if len(all) != 30*12 {
		t.Fatalf("2F00 returned %d bytes, want %d", len(all), 30*12)
	}
}
