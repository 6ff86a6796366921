package card

import (
	"bytes"
	"testing"
)

// FuzzTransmit feeds sequences of APDUs (each prefixed by its length byte)
// to a card. It calls the processing path without Transmit's recover, so a
// panic fails the fuzzer; every response must carry a status word.
func FuzzTransmit(f *testing.F) {
	seq := func(apdus ...string) []byte {
		var out []byte
		for _, a := range apdus {
			b := mustHex(a)
			out = append(out, byte(len(b)))
			out = append(out, b...)
		}
		return out
	}
	f.Add(seq("00A4040000"))
	f.Add(seq("00A4040008A00000077701000000", "80CA006600", "80CA9F7F00", "80CA00E000"))
	f.Add(seq("8050300008010203040506070800", "84820300100102030405060708090A0B0C0D0E0F10"))
	f.Add(seq("0070000000", "01A4040008A00000077701000000", "0070800100"))
	f.Add(seq("80F24002024F0000", "80F24003024F0000"))
	f.Add(seq("80E602001306A0000005550108A00000015100000000000000", "80E8800003C40100"))
	f.Add(seq("80E60C002006A0000005550107A000000555010108A0000005550101010300000002C9000000"))
	f.Add(seq("80E400000A4F08A00000055501010100", "80E4000006D00101D2013000"))
	f.Add(seq("80D80081462A88111069EF0C06CA2299DE5E0EE0B9654C35D7030985428811107DB08C82905D0FE08EE48E9247A89CDC03C655918811103676D9722B8DACAC4B8FF1AA0377054F035F8AF900"))
	f.Add(seq("80E2900006DF0103010203", "80E2910006BF3E035C015A00"))
	f.Add(seq("80F0807F", "80F0800F", "80F080FF"))
	f.Add(seq("80E68000030102", "80E60000020304"))
	f.Add(seq("00C0000000", "00CB2F00025C0000"))
	f.Add([]byte{0xFF, 0x80})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Manufacture(ManufactureSpec{CIN: mustHex("0102030405060708"), Config: UICC3P,
			IssuerMasterKey: bytes.Repeat([]byte{1}, 16), Rand: bytes.NewReader(make([]byte, 4096))})
		if err != nil {
			t.Fatal(err)
		}
		for len(in) > 0 {
			n := int(in[0])
			in = in[1:]
			if n > len(in) {
				n = len(in)
			}
			c.st.Exec++
			resp := c.process(in[:n])
			in = in[n:]
			if len(resp) < 2 {
				t.Fatalf("response without SW: %X", resp)
			}
		}
		if _, err := c.MarshalBinary(); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkSecuredStoreData measures secured (C-DEC + C-MAC + R-MAC +
// R-ENC) STORE DATA commands per second on one card, and reports the size
// of the marshalled state of an idle card.
func BenchmarkSecuredStoreData(b *testing.B) {
	c := newCard(b, UICC)
	idle, err := newCard(b, UICC).MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	h := openIssuerSD(b, c, 0, CentralSDAID)
	cmds := make([][]byte, 0, 1)
	cmds = append(cmds, mustHex("80E2900010DF010D0102030405060708090A0B0C0D"))
	b.ResetTimer()
	for b.Loop() {
		if _, s := h.send(cmds[0]); s != 0x9000 {
			b.Fatalf("SW %04X", s)
		}
	}
	b.ReportMetric(float64(len(idle)), "bytes/idle-card")
}

// BenchmarkMarshal measures persisting a card after an APDU batch.
func BenchmarkMarshal(b *testing.B) {
	c := newCard(b, UICC3P)
	openIssuerSD(b, c, 0, CentralSDAID)
	for b.Loop() {
		blob, err := c.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Restore(blob); err != nil {
			b.Fatal(err)
		}
	}
}
