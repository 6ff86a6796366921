package card

import (
	"bytes"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
)

// TestPrePersonalization runs the Fig. 4 flow at APDU level on every
// configuration: SP SDs under the central SD with temporary keys, one
// generic application instantiated for two SPs, each instance extradited to
// its SP's SD; then the SP rotates its keys (DESIGN.md 6).
func TestPrePersonalization(t *testing.T) {
	for _, cfg := range allConfigs {
		t.Run(string(cfg), func(t *testing.T) {
			c := newCard(t, cfg)
			central := CentralSD(cfg)
			h := openIssuerSD(t, c, 0, central)
			enc, mac, dek := issuerKeys(t, c, central)
			_, _ = enc, mac
			sps := []struct{ sd, inst, key []byte }{
				{hxs("A000000555AA01"), hxs("A000000555010101"), bytes.Repeat([]byte{0x11}, 16)},
				{hxs("A000000555BB01"), hxs("A000000555010102"), bytes.Repeat([]byte{0x22}, 16)},
			}
			for _, sp := range sps {
				// Create the SP SD (SSD package), start its personalization and
				// give it temporary keys: PUT KEY encrypted under the central
				// SD's DEK is forwarded to the new SD.
				h.must(up(cmdBytes(0x80, 0xE6, 0x0C, 0x00, lvs(SSDPackageAID, SSDModuleAID, sp.sd, hxs("800000"), hxs("C900"), nil), true)), apdu.SWOK)
				h.must(up(cmdBytes(0x80, 0xE6, 0x20, 0x00, lvs(nil, nil, sp.sd, nil, nil), true)), apdu.SWOK)
				resp := h.must(up(cmdBytes(0x80, 0xD8, 0x00, 0x81, putKeyData(t, dek, 0x30, sp.key, sp.key, sp.key), true)), apdu.SWOK)
				kcv, _ := gpcrypto.AESKCV(sp.key)
				if !bytes.Equal(resp, append(append(append([]byte{0x30}, kcv...), kcv...), kcv...)) {
					t.Fatalf("PUT KEY response %X", resp)
				}
				h.send(installInstance(GenericELFAID, GenericModuleAID, sp.inst, "00"))
				h.must(up(cmdBytes(0x80, 0xE6, 0x10, 0x00, lvs(sp.sd, nil, sp.inst, nil, nil, nil), true)), apdu.SWOK)
			}
			recs := h.getStatusAll(0x40)
			for _, sp := range sps {
				if r := recs[up(sp.sd)]; r.lc != LCPersonalized || !bytes.Equal(r.sd, central) {
					t.Fatalf("SP SD %X: %+v", sp.sd, r)
				}
				if r := recs[up(sp.inst)]; r.lc != LCSelectable || !bytes.Equal(r.sd, sp.sd) {
					t.Fatalf("instance %X not in its SP SD: %+v", sp.inst, r)
				}
			}
			for _, e := range c.Registry() {
				if bytes.Equal(e.AID, sps[0].inst) && (!bytes.Equal(e.ELF, GenericELFAID) || !bytes.Equal(e.Module, GenericModuleAID)) {
					t.Fatalf("instance origin %+v", e)
				}
			}

			// SP key rotation on the first SP SD, on channel 1.
			sp := sps[0]
			mustTransmit(t, c, "0070000100", "9000")
			selectAID(t, c, 1, sp.sd, "9000")
			s := openSCP03(t, c, 1, 0x30, sp.key, sp.key, sp.key, 0x03)
			n := [][]byte{bytes.Repeat([]byte{0x31}, 16), bytes.Repeat([]byte{0x32}, 16), bytes.Repeat([]byte{0x33}, 16)}
			s.must(up(cmdBytes(0x81, 0xD8, 0x30, 0x81, putKeyData(t, sp.key, 0x31, n...), true)), apdu.SWOK)
			openSCP03(t, c, 1, 0x31, n[0], n[1], n[2], 0x13)
			if _, sw := tryOpenSCP03(t, c, 1, 0x30, sp.key, sp.key, sp.key, 0x03); sw != apdu.SWReferencedDataNotFound {
				t.Fatalf("old key version: SW %04X, want 6A88", sw)
			}
			// The SP personalizes its own instance through its SD.
			s = openSCP03(t, c, 1, 0x31, n[0], n[1], n[2], 0x33)
			s.must(up(cmdBytes(0x81, 0xE6, 0x20, 0x00, lvs(nil, nil, sp.inst, nil, nil), true)), apdu.SWOK)
			s.must("81E2000004DF010100", apdu.SWOK)
			s.must("81E2000304DF020102", apdu.SWIncorrectP1P2) // out of order: 03 after 00
			s.must(up(cmdBytes(0x81, 0xE6, 0x20, 0x00, lvs(nil, nil, sp.inst, nil, nil), true)), apdu.SWOK)
			s.must("81E2000004DF010100", apdu.SWOK)
			s.must("81E2800104DF020102", apdu.SWOK)
			if got := c.PersonalizationData(sp.inst); len(got) != 3 {
				t.Fatalf("instance perso blocks %d, want 3", len(got))
			}
			if got := c.PersonalizationData(sps[1].inst); len(got) != 0 {
				t.Fatalf("the other SP's instance got data")
			}
			for _, e := range c.Registry() {
				if bytes.Equal(e.AID, sp.inst) && e.LifeCycle != LCAppPersonalized {
					t.Fatalf("instance state %02X after personalization", e.LifeCycle)
				}
			}
			// The SP may also select its instance directly: the secure
			// channel is its SD's (GPC 10.1), the data goes to the instance.
			selectAID(t, c, 1, sps[1].inst, "9000")
			other := openSCP03(t, c, 1, 0x30, sps[1].key, sps[1].key, sps[1].key, 0x03)
			other.must("81E2800004DF030100", apdu.SWOK)
			if got := c.PersonalizationData(sps[1].inst); len(got) != 1 {
				t.Fatalf("direct STORE DATA to the instance: %d blocks", len(got))
			}
			// Once PERSONALIZED, the SP SD's keys cannot be replaced through
			// the central SD any more (DESIGN.md 6).
			h.must(up(cmdBytes(0x80, 0xE6, 0x20, 0x00, lvs(nil, nil, sp.sd, nil, nil), true)), apdu.SWOK)
			h.must(up(cmdBytes(0x80, 0xD8, 0x31, 0x81, putKeyData(t, dek, 0x32, sp.key, sp.key, sp.key), true)), apdu.SWConditionsNotSatisfied)
			// The central SD may still lock the SP's instance (DESIGN.md 1).
			h.must("80F0408008"+up(sp.inst), apdu.SWOK)
		})
	}
}
