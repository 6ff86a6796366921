package card

import (
	"bytes"
	"crypto/sha256"
	"reflect"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// expected SDs and privileges per configuration (DESIGN.md 1; the choices
// are documented in aids.go and Manufacture).
var wantSDs = map[Config]map[string]string{
	Embedded: {},
	UICC: {
		up(CentralSDAID): "804000", up(MNOSDAID): "804000", up(TelecomAppletAID): "000000",
	},
	Embedded3P: {
		up(CentralSDAID): "804000", up(ThirdPartySDAID): "804000", up(DMSPSDAID): "A00000",
		up(MandatedDAPSDAID): "C10000", up(CASDAID): "800000",
	},
	UICC3P: {
		up(CentralSDAID): "804000", up(MNOSDAID): "804000", up(TelecomAppletAID): "000000",
		up(ThirdPartySDAID): "804000", up(DMSPSDAID): "A00000", up(MDPHSDAID): "C12080", up(CASDAID): "800000",
	},
}

var allConfigs = []Config{Embedded, UICC, Embedded3P, UICC3P}

func installInstance(elf, mod, inst []byte, priv string) []byte {
	return cmdBytes(0x80, 0xE6, 0x0C, 0x00, lvs(elf, mod, inst, hxs(priv), hxs("C900"), nil), true)
}

func hxs(s string) []byte { b := mustHex(s); return b }

func TestScenarioPerConfiguration(t *testing.T) {
	for _, cfg := range allConfigs {
		t.Run(string(cfg), func(t *testing.T) {
			c := newCard(t, cfg)
			// The ISD (root, Global Registry) sees every SD with its privileges.
			isd := openIssuerSD(t, c, 0, ISDAID)
			isdRec := isd.getStatusAll(0x80)
			wantISD := "9EFE80"
			if cfg == Embedded {
				wantISD = "9A4000"
			}
			if got := up(isdRec[up(ISDAID)].priv); got != wantISD || isdRec[up(ISDAID)].lc != CardSecured {
				t.Fatalf("ISD privileges %s lc %02X, want %s 0F", got, isdRec[up(ISDAID)].lc, wantISD)
			}
			if cfg != Embedded {
				recs := isd.getStatusAll(0x40)
				for aid, p := range wantSDs[cfg] {
					if got := up(recs[aid].priv); got != p {
						t.Errorf("%s privileges %s, want %s", aid, got, p)
					}
				}
				if len(recs) != len(wantSDs[cfg]) {
					t.Errorf("GET STATUS 40 lists %d entries, want %d", len(recs), len(wantSDs[cfg]))
				}
			}
			central := CentralSD(cfg)
			h := isd
			if cfg != Embedded {
				h = openIssuerSD(t, c, 0, central)
				// Not the ISD and no Global Registry: P1=80 is refused.
				h.must("80F28002024F0000", apdu.SWIncorrectP1P2)
			}
			elfs := h.getStatusAll(0x20)
			if _, ok := elfs[up(GenericELFAID)]; !ok {
				t.Fatalf("generic ELF not visible from the central SD: %v", elfs)
			}
			// Allowed: instantiate the generic application.
			inst := hxs("A000000555010199")
			h.send(installInstance(GenericELFAID, GenericModuleAID, inst, "00"))
			recs := h.getStatusAll(0x40)
			if r, ok := recs[up(inst)]; !ok || r.lc != LCSelectable || !bytes.Equal(r.sd, central) {
				t.Fatalf("new instance not in the central SD: %+v", recs)
			}
			// Forbidden actions fail with the GP status word and change nothing.
			before := c.Registry()
			forbid := func(name string, cmd []byte, want uint16) {
				t.Helper()
				if _, s := h.send(cmd); s != want {
					t.Errorf("%s: SW %04X, want %04X", name, s, want)
				}
				if !reflect.DeepEqual(before, c.Registry()) {
					t.Fatalf("%s changed the registry", name)
				}
			}
			forbid("duplicate instance", installInstance(GenericELFAID, GenericModuleAID, inst, "00"), apdu.SWConditionsNotSatisfied)
			forbid("unknown module", installInstance(GenericELFAID, hxs("A0000005550199"), hxs("A000000555019999"), "00"), apdu.SWReferencedDataNotFound)
			forbid("app with AM", installInstance(GenericELFAID, GenericModuleAID, hxs("A000000555019998"), "004000"), apdu.SWIncorrectData)
			forbid("install without C9", cmdBytes(0x80, 0xE6, 0x0C, 0x00, lvs(GenericELFAID, GenericModuleAID, hxs("A000000555019997"), hxs("00"), nil, nil), true), apdu.SWIncorrectData)
			forbid("LOAD without INSTALL", cmdBytes(0x80, 0xE8, 0x80, 0x00, hxs("C4020000"), true), apdu.SWConditionsNotSatisfied)
			if cfg != Embedded {
				forbid("delete the SSD package (ISD's)", cmdBytes(0x80, 0xE4, 0x00, 0x80, tlv.Encode(0x4F, SSDPackageAID), true), apdu.SWReferencedDataNotFound)
				forbid("card lock without Card Lock", cmdBytes(0x80, 0xF0, 0x80, 0x7F, nil, false), apdu.SWConditionsNotSatisfied)
			}
			if cfg == UICC || cfg == UICC3P {
				forbid("delete the MNO's applet", cmdBytes(0x80, 0xE4, 0x00, 0x00, tlv.Encode(0x4F, TelecomAppletAID), true), apdu.SWReferencedDataNotFound)
				forbid("lock the MNO's applet", cmdBytes(0x80, 0xF0, 0x40, 0x80, TelecomAppletAID, false), apdu.SWReferencedDataNotFound)
			}
			// Allowed: lock and unlock the instance, then delete it.
			h.must("80F0408008"+up(inst), apdu.SWOK)
			if got := mustTransmit(t, c, "0070000000", "9000"); up(got) != "01" {
				t.Fatalf("MANAGE CHANNEL open returned %X", got)
			}
			selectAID(t, c, 1, inst, "6A82") // LOCKED is not selectable
			mustTransmit(t, c, "0070800100", "9000")
			h.must("80F0400008"+up(inst), apdu.SWOK)
			h.must("80E400000A4F08"+up(inst)+"00", apdu.SWOK)
			if cfg == Embedded {
				// The central SD (= ISD) holds Card Lock: lock and unlock.
				h.must("80F0807F", apdu.SWOK)
				if c.LifeCycle() != CardLocked {
					t.Fatalf("card not locked")
				}
				h.must("80E60C0000", apdu.SWConditionsNotSatisfied)
				h.must("80F0800F", apdu.SWOK)
			}
			if cfg == Embedded3P || cfg == UICC3P {
				testDelegatedManagement(t, c, cfg)
				testMandatedDAP(t, c, cfg)
			}
		})
	}
}

// testDelegatedManagement: the DM SP SD may install only with a token from
// the Token Verification SD's key, and gets a receipt (GPC C.4, C.5).
func testDelegatedManagement(t *testing.T, c *Card, cfg Config) {
	mustTransmit(t, c, "0070000200", "9000")
	dm := openIssuerSD(t, c, 2, DMSPSDAID)
	inst := hxs("A0000005550101DD")
	body := lvs(GenericELFAID, GenericModuleAID, inst, hxs("00"), hxs("C900"))
	before := c.Registry()
	if _, s := dm.send(cmdBytes(0x82, 0xE6, 0x0C, 0x00, append(clone(body), 0x00), true)); s != apdu.SWSecurityNotSatisfied {
		t.Fatalf("DM install without token: SW %04X", s)
	}
	bad := append(append(clone(body), 0x10), bytes.Repeat([]byte{0xEE}, 16)...)
	if _, s := dm.send(cmdBytes(0x82, 0xE6, 0x0C, 0x00, bad, true)); s != apdu.SWSecurityNotSatisfied {
		t.Fatalf("DM install with a bad token: SW %04X", s)
	}
	if !reflect.DeepEqual(before, c.Registry()) {
		t.Fatalf("rejected DM install changed the registry")
	}
	tv, rg := ISDAID, ISDAID
	if cfg == UICC3P {
		tv, rg = MDPHSDAID, MDPHSDAID
	}
	tokenKey, _ := DeriveKey(testMaster, DivToken, SDKDD(c.KDD(), tv))
	dtbs := append([]byte{0x0C, 0x00, byte(len(body))}, body...)
	token, _ := gpcrypto.CMAC(tokenKey, dtbs)
	good := append(append(clone(body), 0x10), token...)
	resp, s := dm.send(cmdBytes(0x82, 0xE6, 0x0C, 0x00, good, true))
	if s != apdu.SWOK {
		t.Fatalf("DM install with token: SW %04X", s)
	}
	// Response = len || len receipt || receipt || confirmation data.
	if len(resp) < 2 || int(resp[0]) != len(resp)-1 || resp[1] != 16 {
		t.Fatalf("bad confirmation %X", resp)
	}
	receipt, cd := resp[2:18], resp[18:]
	receiptKey, _ := DeriveKey(testMaster, DivReceipt, SDKDD(c.KDD(), rg))
	want, _ := gpcrypto.CMAC(receiptKey, append(append(clone(cd), tlv.AppendLV(nil, GenericELFAID)...), tlv.AppendLV(nil, inst)...))
	if !bytes.Equal(want, receipt) {
		t.Fatalf("receipt does not verify")
	}
	if cd[0] != 0x02 || cd[1] != 0 || cd[2] != 1 {
		t.Fatalf("confirmation counter %X, want 0001", cd[:3])
	}
	// DELETE with the derived-vector token layout (GPC Table C-9).
	del := tlv.Encode(0x4F, inst)
	dtok, _ := gpcrypto.CMAC(tokenKey, append([]byte{0x00, 0x00, byte(len(del))}, del...))
	if _, s := dm.send(cmdBytes(0x82, 0xE4, 0x00, 0x00, append(clone(del), tlv.Encode(0x9E, dtok)...), true)); s != apdu.SWOK {
		t.Fatalf("DM delete with token: SW %04X", s)
	}
	mustTransmit(t, c, "0070800200", "9000")
}

// testMandatedDAP: with a PERSONALIZED Mandated DAP SD, every load needs its
// DAP (GPC 9.3.5).
func testMandatedDAP(t *testing.T, c *Card, cfg Config) {
	h := openIssuerSD(t, c, 0, CentralSDAID)
	vaSD := MandatedDAPSDAID
	if cfg == UICC3P {
		vaSD = MDPHSDAID
	}
	lfdb := bytes.Repeat([]byte{0x5A}, 300)
	hash := sha256.Sum256(lfdb)
	elf := hxs("A0000005559901")
	loadFile := func(dap []byte) []byte {
		out := clone(dap)
		return append(out, tlv.Encode(0xC4, lfdb)...)
	}
	runLoad := func(file []byte) uint16 {
		h.must(up(cmdBytes(0x80, 0xE6, 0x02, 0x00, lvs(elf, nil, hash[:], nil, nil), true)), apdu.SWOK)
		for i := 0; len(file) > 0; i++ {
			n := min(len(file), 200)
			p1 := byte(0)
			if n == len(file) {
				p1 = 0x80
			}
			_, s := h.send(cmdBytes(0x80, 0xE8, p1, byte(i), file[:n], true))
			if p1 == 0x80 || s != apdu.SWOK {
				return s
			}
			file = file[n:]
		}
		return 0
	}
	if s := runLoad(loadFile(nil)); s != apdu.SWSecurityNotSatisfied {
		t.Fatalf("load without mandated DAP: SW %04X", s)
	}
	dapKey, _ := DeriveKey(testMaster, DivDAP, SDKDD(c.KDD(), vaSD))
	sig, _ := gpcrypto.CMAC(dapKey, hash[:])
	dap := tlv.Encode(0xE2, append(tlv.Encode(0x4F, vaSD), tlv.Encode(0xC3, sig)...))
	if s := runLoad(loadFile(dap)); s != apdu.SWOK {
		t.Fatalf("load with mandated DAP: SW %04X", s)
	}
	found := false
	for _, e := range c.Registry() {
		if bytes.Equal(e.AID, elf) && e.Kind == KindELF && bytes.Equal(e.SD, CentralSDAID) {
			found = true
		}
	}
	if !found {
		t.Fatalf("loaded ELF not in the registry")
	}
}
