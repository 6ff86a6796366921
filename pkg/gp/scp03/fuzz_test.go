package scp03

import (
	"encoding/json"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
)

// FuzzCardUnwrap feeds arbitrary commands, and arbitrary persisted session
// state, to the card side: it must never panic.
func FuzzCardUnwrap(f *testing.F) {
	for _, s := range []string{"84E291000EBF3E035C015A558D036518A2829700", "84F220020863A63F8959827FB2", "84F2", "80CA006600",
		"84E2910018267A85DFE4A98FCA6FB0527E0DFECCE4914E40401433C87F00"} {
		b, _ := apdu.DecodeHex(s)
		f.Add(b, byte(0x33), []byte(nil))
		f.Add(b, byte(0x01), []byte(`{"state":2,"level":51,"s_enc":"AAAA","mac_chain":"AA=="}`))
	}
	f.Fuzz(func(t *testing.T, raw []byte, level byte, state []byte) {
		keys := StaticKeys{ENC: make([]byte, 16), MAC: make([]byte, 16), DEK: make([]byte, 16)}
		h, _ := NewHost(keys, HostOptions{})
		iu, _ := h.InitializeUpdate(0x30, make([]byte, 8))
		iuc, _ := apdu.Parse(iu)
		cs, resp, err := BeginCard(keys, 0x30, 0x70, make([]byte, 10), iuc.Data, nil, WithSequenceCounter(1), WithSDAID([]byte{0xA0, 0, 0, 0, 0x01}))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.ProcessInitializeUpdate(resp); err != nil {
			t.Fatal(err)
		}
		if ea, err := h.ExternalAuthenticate(level); err == nil {
			eac, _ := apdu.Parse(ea)
			if err := cs.ExternalAuthenticate(eac); err != nil {
				t.Fatal(err)
			}
		}
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
