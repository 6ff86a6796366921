package scp03

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/internal/testvectors"
)

const sessionsFile = "scp03-sessions.json"

func hx(t testing.TB, s string) []byte { return testvectors.Hex(t, s) }

func up(b []byte) string { return testvectors.Upper(b) }

func byteOf(t testing.TB, s string) byte {
	t.Helper()
	b := hx(t, s)
	if len(b) != 1 {
		t.Fatalf("want one byte, got %q", s)
	}
	return b[0]
}

func keysOf(t testing.TB, s testvectors.Session) StaticKeys {
	return StaticKeys{ENC: hx(t, s.StaticKeys.ENC), MAC: hx(t, s.StaticKeys.MAC), DEK: hx(t, s.StaticKeys.DEK)}
}

func swOf(t testing.TB, s string) uint16 {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 16)
	if err != nil {
		t.Fatalf("bad SW %q", s)
	}
	return uint16(v)
}

func TestSessionsHost(t *testing.T) {
	sessions := testvectors.Sessions(t, sessionsFile)
	if len(sessions) != 14 {
		t.Fatalf("want 14 sessions, got %d", len(sessions))
	}
	wrapped, unwrapped := 0, 0
	for _, s := range sessions {
		t.Run(s.Name, func(t *testing.T) {
			h, err := NewHost(keysOf(t, s), HostOptions{SDAID: hx(t, s.PseudoRandomAID)})
			if err != nil {
				t.Fatal(err)
			}
			kvnReq := hx(t, s.InitUpdate.Command)[2]
			cmd, err := h.InitializeUpdate(kvnReq, hx(t, s.HostChallenge))
			if err != nil {
				t.Fatal(err)
			}
			if got := up(cmd); got != s.InitUpdate.Command {
				t.Fatalf("INITIALIZE UPDATE = %s, want %s", got, s.InitUpdate.Command)
			}
			resp := append(hx(t, s.InitUpdate.Response), hx(t, s.InitUpdate.SW)...)
			if err := h.ProcessInitializeUpdateResponse(resp); err != nil {
				t.Fatal(err)
			}
			r := h.InitUpdate()
			f := s.InitFields
			if up(r.KDD) != f.KDD || r.KVN != byteOf(t, f.KVN) || r.I != byteOf(t, f.I) ||
				up(r.CardChallenge) != f.CardChallenge || up(r.CardCryptogram) != f.CardCryptogram {
				t.Fatalf("parsed INITIALIZE UPDATE fields %+v do not match %+v", r, f)
			}
			if f.SequenceCounter != "" {
				want, _ := strconv.ParseUint(f.SequenceCounter, 16, 32)
				if !r.HasSequenceCounter || r.SequenceCounter != uint32(want) {
					t.Fatalf("sequence counter %06X, want %s", r.SequenceCounter, f.SequenceCounter)
				}
			}
			sk := h.SessionKeys()
			if up(sk.ENC) != s.SessionKeys["s_enc"] || up(sk.MAC) != s.SessionKeys["s_mac"] || up(sk.RMAC) != s.SessionKeys["s_rmac"] {
				t.Fatalf("session keys do not match")
			}
			ea, err := h.ExternalAuthenticate(byteOf(t, s.SecurityLevel))
			if err != nil {
				t.Fatal(err)
			}
			if got := up(ea); got != s.ExtAuth.Command {
				t.Fatalf("EXTERNAL AUTHENTICATE = %s, want %s", got, s.ExtAuth.Command)
			}
			if !bytes.Equal(ea[5:13], hx(t, s.HostCryptogram)) {
				t.Fatalf("host cryptogram mismatch")
			}
			if s.ExtAuth.MACChainAfter != "" && up(h.MACChain()) != s.ExtAuth.MACChainAfter {
				t.Fatalf("chain after EXTERNAL AUTHENTICATE = %s", up(h.MACChain()))
			}
			for i, c := range s.Commands {
				w, err := h.Wrap(hx(t, c.Plain))
				if err != nil {
					t.Fatalf("command %d: %v", i, err)
				}
				if got := up(w); got != c.Wrapped {
					t.Fatalf("command %d wrapped = %s, want %s", i, got, c.Wrapped)
				}
				wrapped++
				if c.EncCounter != 0 && int(h.EncryptionCounter()) != c.EncCounter {
					t.Fatalf("command %d counter %d, want %d", i, h.EncryptionCounter(), c.EncCounter)
				}
				if c.MACChainAfter != "" && up(h.MACChain()) != c.MACChainAfter {
					t.Fatalf("command %d chain %s, want %s", i, up(h.MACChain()), c.MACChainAfter)
				}
				if c.ResponseWrapped == nil || c.SW == nil || *c.SW != "9000" {
					continue
				}
				data, sw, err := h.Unwrap(append(hx(t, *c.ResponseWrapped), hx(t, *c.SW)...))
				if err != nil {
					t.Fatalf("command %d unwrap: %v", i, err)
				}
				if sw != 0x9000 || up(data) != *c.ResponsePlain {
					t.Fatalf("command %d response = %s %04X, want %s", i, up(data), sw, *c.ResponsePlain)
				}
				unwrapped++
			}
		})
	}
	t.Logf("%d sessions, %d wrapped commands, %d responses unwrapped", len(sessions), wrapped, unwrapped)
}

// beginFromSession starts a card session as the simulator would: keys, KVN,
// i and KDD from the transcript; the challenge from the sequence counter and
// SD AID in pseudo-random mode.
func beginFromSession(t *testing.T, s testvectors.Session) (CardSession, []byte) {
	t.Helper()
	initCmd, err := apdu.Parse(hx(t, s.InitUpdate.Command))
	if err != nil {
		t.Fatal(err)
	}
	f := s.InitFields
	i := byteOf(t, f.I)
	var opts []CardOption
	if i&IPseudoRandom != 0 {
		seq, _ := strconv.ParseUint(f.SequenceCounter, 16, 32)
		opts = append(opts, WithSequenceCounter(uint32(seq)), WithSDAID(hx(t, s.PseudoRandomAID)))
	}
	cs, resp, err := BeginCard(keysOf(t, s), byteOf(t, s.KeyVersion), i, hx(t, f.KDD), initCmd.Data, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if got := up(resp); got != s.InitUpdate.Response {
		t.Fatalf("INITIALIZE UPDATE response = %s, want %s", got, s.InitUpdate.Response)
	}
	return cs, resp
}

// roundTrip simulates the simulator persisting the session between commands.
func roundTrip(t *testing.T, cs *CardSession) {
	t.Helper()
	b, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	var back CardSession
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	*cs = back
}

func TestSessionsCard(t *testing.T) {
	for _, s := range testvectors.Sessions(t, sessionsFile) {
		t.Run(s.Name, func(t *testing.T) {
			cs, _ := beginFromSession(t, s)
			roundTrip(t, &cs)
			ea, err := apdu.Parse(hx(t, s.ExtAuth.Command))
			if err != nil {
				t.Fatal(err)
			}
			if err := cs.ExternalAuthenticate(ea); err != nil {
				t.Fatalf("EXTERNAL AUTHENTICATE rejected: %v", err)
			}
			if cs.Level != byteOf(t, s.SecurityLevel) || !cs.Authenticated() {
				t.Fatalf("level %02X state %v", cs.Level, cs.State)
			}
			for i, c := range s.Commands {
				roundTrip(t, &cs)
				w, err := apdu.Parse(hx(t, c.Wrapped))
				if err != nil {
					t.Fatal(err)
				}
				p, err := cs.UnwrapCommand(w)
				if err != nil {
					t.Fatalf("command %d rejected: %v", i, err)
				}
				if got := up(p.Bytes()); got != c.Plain {
					t.Fatalf("command %d unwrapped = %s, want %s", i, got, c.Plain)
				}
				if c.ResponsePlain == nil || c.SW == nil {
					continue
				}
				got := cs.WrapResponse(hx(t, *c.ResponsePlain), swOf(t, *c.SW))
				want := *c.ResponseWrapped + *c.SW
				if up(got) != want {
					t.Fatalf("command %d response = %s, want %s", i, up(got), want)
				}
			}
		})
	}
}

func TestCardRejectsFlippedBit(t *testing.T) {
	for _, s := range testvectors.Sessions(t, sessionsFile) {
		if len(s.Commands) == 0 {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			w := hx(t, s.Commands[0].Wrapped)
			// Flip one bit in the header, the data and the MAC in turn.
			for _, pos := range []int{2, 5, len(w) - 3} {
				cs, _ := beginFromSession(t, s)
				ea, _ := apdu.Parse(hx(t, s.ExtAuth.Command))
				if err := cs.ExternalAuthenticate(ea); err != nil {
					t.Fatal(err)
				}
				bad := append([]byte(nil), w...)
				bad[pos] ^= 0x10
				cmd, err := apdu.Parse(bad)
				if err != nil {
					t.Fatal(err)
				}
				_, err = cs.UnwrapCommand(cmd)
				if err == nil {
					t.Fatalf("flipped bit at %d accepted", pos)
				}
				if sw := apdu.SWOf(err, 0); sw != apdu.SWSecurityNotSatisfied {
					t.Fatalf("flipped bit at %d: SW %04X, want 6982 (%v)", pos, sw, err)
				}
				if cs.State != StateAborted {
					t.Fatalf("session not aborted")
				}
				// The genuine command is now refused too: the session is closed.
				good, _ := apdu.Parse(w)
				if _, err := cs.UnwrapCommand(good); apdu.SWOf(err, 0) != apdu.SWSecurityNotSatisfied {
					t.Fatalf("aborted session accepted a command: %v", err)
				}
			}
		})
	}
}

func TestCardExternalAuthenticateErrors(t *testing.T) {
	s := testvectors.Sessions(t, sessionsFile)[0]
	ea := hx(t, s.ExtAuth.Command)
	cases := []struct {
		name string
		pos  int
		sw   uint16
		err  error
	}{
		{"host cryptogram", 6, apdu.SWAuthenticationFailed, ErrHostCryptogram},
		{"mac", len(ea) - 1, apdu.SWSecurityNotSatisfied, ErrCMAC},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cs, _ := beginFromSession(t, s)
			bad := append([]byte(nil), ea...)
			bad[c.pos] ^= 0x01
			cmd, _ := apdu.Parse(bad)
			err := cs.ExternalAuthenticate(cmd)
			if !errors.Is(err, c.err) || apdu.SWOf(err, 0) != c.sw {
				t.Fatalf("got %v (SW %04X), want %v / %04X", err, apdu.SWOf(err, 0), c.err, c.sw)
			}
		})
	}
	t.Run("plain command before auth", func(t *testing.T) {
		cs, _ := beginFromSession(t, s)
		_, err := cs.UnwrapCommand(apdu.Command{CLA: 0x80, INS: 0xF2, P1: 0x80, P2: 0x02, Le: 0})
		if apdu.SWOf(err, 0) != apdu.SWConditionsNotSatisfied {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("plain command at level 01+", func(t *testing.T) {
		cs, _ := beginFromSession(t, s)
		cmd, _ := apdu.Parse(ea)
		if err := cs.ExternalAuthenticate(cmd); err != nil {
			t.Fatal(err)
		}
		_, err := cs.UnwrapCommand(apdu.Command{CLA: 0x80, INS: 0xCA, P1: 0x00, P2: 0x66, Le: 0})
		if !errors.Is(err, ErrSecurityLevel) || apdu.SWOf(err, 0) != apdu.SWSecurityNotSatisfied {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unsupported level", func(t *testing.T) {
		// i=10 announces no R-MAC: level 11 must be refused with 6A86.
		var s192 testvectors.Session
		for _, x := range testvectors.Sessions(t, sessionsFile) {
			if x.Name == "gpshell_get_status_aes_192" {
				s192 = x
			}
		}
		cs, _ := beginFromSession(t, s192)
		cmd, _ := apdu.Parse(hx(t, s192.ExtAuth.Command))
		cmd.P1 = LevelCMACRMAC
		if err := cs.ExternalAuthenticate(cmd); apdu.SWOf(err, 0) != apdu.SWIncorrectP1P2 {
			t.Fatalf("got %v", err)
		}
	})
}

func TestHostRejectsBadCardCryptogram(t *testing.T) {
	s := testvectors.Sessions(t, sessionsFile)[0]
	h, _ := NewHost(keysOf(t, s), HostOptions{})
	if _, err := h.InitializeUpdate(0x30, hx(t, s.HostChallenge)); err != nil {
		t.Fatal(err)
	}
	resp := hx(t, s.InitUpdate.Response)
	resp[25] ^= 0x80 // inside the card cryptogram
	if err := h.ProcessInitializeUpdate(resp); !errors.Is(err, ErrCardCryptogram) {
		t.Fatalf("got %v", err)
	}
}

func TestHostRejectsBadRMAC(t *testing.T) {
	s := testvectors.Sessions(t, sessionsFile)[0] // level 11, response published
	h, _ := NewHost(keysOf(t, s), HostOptions{})
	h.InitializeUpdate(0x30, hx(t, s.HostChallenge))
	if err := h.ProcessInitializeUpdate(hx(t, s.InitUpdate.Response)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ExternalAuthenticate(byteOf(t, s.SecurityLevel)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wrap(hx(t, s.Commands[0].Plain)); err != nil {
		t.Fatal(err)
	}
	r := append(hx(t, *s.Commands[0].ResponseWrapped), 0x90, 0x00)
	r[len(r)-4] ^= 0x01
	if _, _, err := h.Unwrap(r); !errors.Is(err, ErrRMAC) {
		t.Fatalf("got %v", err)
	}
	// An error SW carries no R-MAC and passes through.
	data, sw, err := h.Unwrap([]byte{0x6A, 0x88})
	if err != nil || sw != 0x6A88 || len(data) != 0 {
		t.Fatalf("error SW: %v %04X %X", err, sw, data)
	}
}
