package scp03

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
)

// Host and card agree at every level, key size, in S16 mode and on a
// further logical channel, for commands of every ISO case including
// extended ones, and for responses with and without data and error SWs.
func TestHostCardRoundTrip(t *testing.T) {
	aid := []byte{0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00}
	cmds := []apdu.Command{
		{CLA: 0x80, INS: 0xF2, P1: 0x20, P2: 0x02, Le: apdu.LeAbsent},
		{CLA: 0x80, INS: 0xCA, P1: 0x00, P2: 0x66, Le: 0},
		{CLA: 0x80, INS: 0xE2, P1: 0x90, P2: 0x00, Data: bytes.Repeat([]byte{1}, 15), Le: apdu.LeAbsent},
		{CLA: 0x80, INS: 0xE2, P1: 0x90, P2: 0x00, Data: bytes.Repeat([]byte{2}, 16), Le: 0},
		{CLA: 0x80, INS: 0xE2, P1: 0x90, P2: 0x00, Data: bytes.Repeat([]byte{3}, 200), Le: 0},
		{CLA: 0x80, INS: 0xE2, P1: 0x90, P2: 0x00, Data: bytes.Repeat([]byte{4}, 300), Le: 0},
		{CLA: 0x00, INS: 0xCA, P1: 0x00, P2: 0x42, Le: 0},
	}
	responses := []struct {
		data []byte
		sw   uint16
	}{{nil, 0x9000}, {[]byte{0x00}, 0x9000}, {bytes.Repeat([]byte{9}, 40), 0x6310}, {nil, 0x6A88}, {[]byte{1, 2}, 0x6A80}}
	for _, kl := range []int{16, 24, 32} {
		for _, i := range []byte{0x70, 0x71, 0x60} {
			for _, level := range []byte{0x00, 0x01, 0x03, 0x11, 0x13, 0x33} {
				for _, ch := range []int{0, 5} {
					name := fmt.Sprintf("AES%d/i=%02X/level=%02X/ch=%d", kl*8, i, level, ch)
					t.Run(name, func(t *testing.T) {
						roundTripOne(t, kl, i, level, ch, aid, cmds, responses)
					})
				}
			}
		}
	}
}

func roundTripOne(t *testing.T, kl int, i, level byte, ch int, aid []byte, cmds []apdu.Command, responses []struct {
	data []byte
	sw   uint16
}) {
	keys := StaticKeys{ENC: bytes.Repeat([]byte{0x11}, kl), MAC: bytes.Repeat([]byte{0x22}, kl), DEK: bytes.Repeat([]byte{0x33}, kl)}
	s16 := i&IS16 != 0
	h, err := NewHost(keys, HostOptions{Channel: ch, S16: s16, SDAID: aid, KVN: 0x30})
	if err != nil {
		t.Fatal(err)
	}
	iu, err := h.InitializeUpdate(0x30, nil)
	if err != nil {
		t.Fatal(err)
	}
	iuc, err := apdu.Parse(iu)
	if err != nil || apdu.LogicalChannel(iuc.CLA) != ch {
		t.Fatalf("INITIALIZE UPDATE %X", iu)
	}
	var opts []CardOption
	if i&IPseudoRandom != 0 {
		opts = append(opts, WithSequenceCounter(0x000101), WithSDAID(aid))
	}
	cs, resp, err := BeginCard(keys, 0x30, i, make([]byte, 10), iuc.Data, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ProcessInitializeUpdate(resp); err != nil {
		t.Fatal(err)
	}
	ea, err := h.ExternalAuthenticate(level)
	allowed := levelAllowedByI(level, i)
	if !allowed {
		if err == nil {
			t.Fatal("host built EXTERNAL AUTHENTICATE for an unsupported level")
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	eac, _ := apdu.Parse(ea)
	if err := cs.ExternalAuthenticate(eac); err != nil {
		t.Fatal(err)
	}
	for n, c := range cmds {
		c.CLA = apdu.WithChannel(c.CLA, ch)
		w, err := h.WrapCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		wire, err := w.Encode()
		if err != nil {
			t.Fatal(err)
		}
		// The card sees the wire bytes, possibly after a restart.
		b, _ := json.Marshal(cs)
		var cs2 CardSession
		if err := json.Unmarshal(b, &cs2); err != nil {
			t.Fatal(err)
		}
		cs = cs2
		got, err := apdu.Parse(wire)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := cs.UnwrapCommand(got)
		if err != nil {
			t.Fatalf("command %d: %v", n, err)
		}
		if !bytes.Equal(plain.Bytes(), c.Bytes()) {
			t.Fatalf("command %d: %X, want %X", n, plain.Bytes(), c.Bytes())
		}
		r := responses[n%len(responses)]
		rw := cs.WrapResponse(r.data, r.sw)
		data, sw, err := h.Unwrap(rw)
		if err != nil || sw != r.sw || !bytes.Equal(data, r.data) {
			t.Fatalf("response %d: %X %04X %v", n, data, sw, err)
		}
		if level&BitRMAC != 0 && apdu.IsSuccessOrWarning(r.sw) && len(rw) < len(r.data)+2+macLength(i) {
			t.Fatalf("response %d carries no R-MAC", n)
		}
		if !apdu.IsSuccessOrWarning(r.sw) && len(rw) != len(r.data)+2 {
			t.Fatalf("error response %d was protected", n)
		}
		if level&BitRENC != 0 && len(r.data) > 4 && apdu.IsSuccessOrWarning(r.sw) && bytes.Contains(rw, r.data) {
			t.Fatalf("response %d not encrypted", n)
		}
	}
}

func TestBeginCardErrors(t *testing.T) {
	keys := StaticKeys{ENC: make([]byte, 16), MAC: make([]byte, 16), DEK: make([]byte, 16)}
	hc := make([]byte, 8)
	cases := []struct {
		name string
		f    func() error
		sw   uint16
	}{
		{"bad keys", func() error {
			_, _, err := BeginCard(StaticKeys{ENC: make([]byte, 16), MAC: make([]byte, 24)}, 1, 0x00, make([]byte, 10), hc, nil)
			return err
		}, apdu.SWReferencedDataNotFound},
		{"kdd", func() error { _, _, err := BeginCard(keys, 1, 0x00, make([]byte, 9), hc, nil); return err }, apdu.SWIncorrectData},
		{"host challenge", func() error { _, _, err := BeginCard(keys, 1, 0x00, make([]byte, 10), hc[:7], nil); return err }, apdu.SWWrongLength},
		{"no counter", func() error { _, _, err := BeginCard(keys, 1, 0x70, make([]byte, 10), hc, nil); return err }, apdu.SWConditionsNotSatisfied},
		{"counter exhausted", func() error {
			_, _, err := BeginCard(keys, 1, 0x70, make([]byte, 10), hc, nil, WithSequenceCounter(1<<24))
			return err
		}, apdu.SWConditionsNotSatisfied},
		{"card challenge", func() error { _, _, err := BeginCard(keys, 1, 0x00, make([]byte, 10), hc, make([]byte, 7)); return err }, apdu.SWIncorrectData},
	}
	for _, c := range cases {
		if sw := apdu.SWOf(c.f(), 0); sw != c.sw {
			t.Errorf("%s: SW %04X, want %04X", c.name, sw, c.sw)
		}
	}
	// Random challenge mode: no counter in the response.
	cs, resp, err := BeginCard(keys, 1, 0x00, make([]byte, 10), hc, nil)
	if err != nil || len(resp) != 29 || cs.HasSequenceCounter || len(cs.CardChallenge) != 8 {
		t.Fatalf("%X %v", resp, err)
	}
	// ExternalAuthenticate twice: the second is a state error.
	h, _ := NewHost(keys, HostOptions{})
	h.InitializeUpdate(1, hc)
	cs, resp, _ = BeginCard(keys, 1, 0x00, make([]byte, 10), hc, nil)
	if err := h.ProcessInitializeUpdate(resp); err != nil {
		t.Fatal(err)
	}
	ea, _ := h.ExternalAuthenticate(LevelCMAC)
	eac, _ := apdu.Parse(ea)
	if err := cs.ExternalAuthenticate(eac); err != nil {
		t.Fatal(err)
	}
	if err := cs.ExternalAuthenticate(eac); apdu.SWOf(err, 0) != apdu.SWConditionsNotSatisfied {
		t.Fatal(err)
	}
	// Host state errors.
	h2, _ := NewHost(keys, HostOptions{})
	if _, err := h2.Wrap([]byte{0x80, 0xCA, 0, 0x66, 0}); err == nil {
		t.Fatal("wrap before auth")
	}
	if _, err := h2.ExternalAuthenticate(1); err == nil {
		t.Fatal("ext auth before init")
	}
	if err := h2.ProcessInitializeUpdate(resp); err == nil {
		t.Fatal("process without init")
	}
	if _, err := NewHost(StaticKeys{ENC: make([]byte, 3)}, HostOptions{}); err == nil {
		t.Fatal("bad keys")
	}
	if (SessionState(9)).String() == "" || StateAborted.String() != "aborted" {
		t.Fatal("state names")
	}
}
