package scp02

import (
	"encoding/json"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/internal/testvectors"
)

func TestSessionIntermediates(t *testing.T) {
	var d struct {
		In struct {
			Session  string `json:"session"`
			SENC     string `json:"s_enc"`
			CMAC     string `json:"c_mac_key"`
			RMAC     string `json:"r_mac_key"`
			DEK      string `json:"dek_session_key"`
			Host     string `json:"host_cryptogram"`
			EACMAC   string `json:"ext_auth_c_mac"`
			FirstICV string `json:"icv_for_first_command"`
		} `json:"scp02_session_intermediates"`
	}
	testvectors.JSON(t, "gp-derived.json", &d)
	in := d.In
	var s testvectors.Session
	for _, x := range testvectors.Sessions(t, sessionsFile) {
		if x.Name == in.Session {
			s = x
		}
	}
	if s.Name == "" {
		t.Fatalf("session %s not found", in.Session)
	}
	h, _ := NewHost(keysOf(t, s), HostOptions{})
	h.InitializeUpdate(0x20, hx(t, s.HostChallenge))
	if err := h.ProcessInitializeUpdate(hx(t, s.InitUpdate.Response)); err != nil {
		t.Fatal(err)
	}
	sk := h.SessionKeys()
	if up(sk.ENC) != in.SENC || up(sk.CMAC) != in.CMAC || up(sk.RMAC) != in.RMAC || up(sk.DEK) != in.DEK {
		t.Fatal("session keys")
	}
	ea, _ := h.ExternalAuthenticate(LevelCMAC)
	if up(ea[5:13]) != in.Host || up(ea[13:]) != in.EACMAC || up(h.MACChain()) != in.EACMAC {
		t.Fatalf("EXTERNAL AUTHENTICATE %X", ea)
	}
	icv, err := nextICV(sk.CMAC, h.MACChain(), DefaultI)
	if err != nil || up(icv) != in.FirstICV {
		t.Fatalf("ICV %X %v", icv, err)
	}
}

// FuzzCardUnwrap feeds arbitrary commands to an authenticated card session:
// it must never panic, whatever the command or the restored session state.
func FuzzCardUnwrap(f *testing.F) {
	for _, s := range []string{"84F220020814DB34FA4341DCA8", "84CA00660855ED7C5FF069512B00", "84F2", "80CA006600",
		"84E4008018BC146FA0403BE4BAD3BC089E4ABD8674DA7EFEA21047B85800"} {
		b, _ := apdu.DecodeHex(s)
		f.Add(b, byte(0x03), []byte(nil))
		f.Add(b, byte(0x01), []byte(`{"state":2,"level":3,"c_mac":"AAAA","mac_chain":"AA=="}`))
	}
	f.Fuzz(func(t *testing.T, raw []byte, level byte, state []byte) {
		keys := StaticKeys{ENC: make([]byte, 16), MAC: make([]byte, 16), DEK: make([]byte, 16)}
		h, _ := NewHost(keys, HostOptions{})
		iu, _ := h.InitializeUpdate(1, make([]byte, 8))
		iuc, _ := apdu.Parse(iu)
		cs, resp, err := BeginCard(keys, 1, DefaultI, make([]byte, 10), 1, iuc.Data, make([]byte, 6))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.ProcessInitializeUpdate(resp); err != nil {
			t.Fatal(err)
		}
		ea, err := h.ExternalAuthenticate(level & 0x03)
		if err != nil {
			return
		}
		eac, _ := apdu.Parse(ea)
		_ = cs.ExternalAuthenticate(eac)
		if len(state) > 0 {
			var restored CardSession
			if json.Unmarshal(state, &restored) == nil {
				cs = restored
			}
		}
		cmd, err := apdu.Parse(raw)
		if err != nil {
			return
		}
		_ = cs.ExternalAuthenticate(cmd)
		_, _ = cs.UnwrapCommand(cmd)
		_ = cs.WrapResponse(raw, 0x9000)
		_, _ = cs.DecryptKey(raw)
	})
}
