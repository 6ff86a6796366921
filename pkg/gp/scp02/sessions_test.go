package scp02

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/gp/internal/testvectors"
)

const sessionsFile = "scp02-sessions.json"

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

func iOf(t testing.TB, s testvectors.Session) byte {
	if s.I == nil {
		return DefaultI // pySim: not stated, ICV encryption in use
	}
	return byteOf(t, *s.I)
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
	if len(sessions) != 3 {
		t.Fatalf("want 3 sessions, got %d", len(sessions))
	}
	for _, s := range sessions {
		t.Run(s.Name, func(t *testing.T) {
			h, err := NewHost(keysOf(t, s), HostOptions{I: iOf(t, s)})
			if err != nil {
				t.Fatal(err)
			}
			cmd, err := h.InitializeUpdate(hx(t, s.InitUpdate.Command)[2], hx(t, s.HostChallenge))
			if err != nil {
				t.Fatal(err)
			}
			if up(cmd) != s.InitUpdate.Command {
				t.Fatalf("INITIALIZE UPDATE = %X", cmd)
			}
			if err := h.ProcessInitializeUpdateResponse(append(hx(t, s.InitUpdate.Response), hx(t, s.InitUpdate.SW)...)); err != nil {
				t.Fatal(err)
			}
			r, f := h.InitUpdate(), s.InitFields
			if up(r.KDD) != f.KDD || r.KVN != byteOf(t, f.KVN) || up(r.CardChallenge) != f.CardChallenge ||
				up(r.CardCryptogram) != f.CardCryptogram || up(seqBytes(r.SequenceCounter)) != f.SequenceCounter {
				t.Fatalf("fields %+v", r)
			}
			sk := h.SessionKeys()
			if up(sk.ENC) != s.SessionKeys["s_enc"] || up(sk.CMAC) != s.SessionKeys["c_mac"] ||
				up(sk.RMAC) != s.SessionKeys["r_mac"] || up(sk.DEK) != s.SessionKeys["dek"] {
				t.Fatal("session keys")
			}
			ea, err := h.ExternalAuthenticate(byteOf(t, s.SecurityLevel))
			if err != nil {
				t.Fatal(err)
			}
			if up(ea) != s.ExtAuth.Command {
				t.Fatalf("EXTERNAL AUTHENTICATE = %X, want %s", ea, s.ExtAuth.Command)
			}
			if !bytes.Equal(ea[5:13], hx(t, s.HostCryptogram)) {
				t.Fatal("host cryptogram")
			}
			for n, c := range s.Commands {
				icv, err := nextICV(sk.CMAC, h.MACChain(), h.i)
				if err != nil {
					t.Fatal(err)
				}
				if c.ICVUsed != "" && up(icv) != c.ICVUsed {
					t.Fatalf("command %d ICV %X, want %s", n, icv, c.ICVUsed)
				}
				w, err := h.Wrap(hx(t, c.Plain))
				if err != nil {
					t.Fatal(err)
				}
				if up(w) != c.Wrapped {
					t.Fatalf("command %d wrapped = %X, want %s", n, w, c.Wrapped)
				}
				if c.CMAC != "" && up(h.MACChain()) != c.CMAC {
					t.Fatalf("command %d C-MAC %X", n, h.MACChain())
				}
				if c.ResponseWrapped != nil && c.SW != nil {
					data, sw, err := h.Unwrap(append(hx(t, *c.ResponseWrapped), hx(t, *c.SW)...))
					if err != nil || sw != swOf(t, *c.SW) || up(data) != *c.ResponsePlain {
						t.Fatalf("command %d unwrap %X %04X %v", n, data, sw, err)
					}
				}
			}
		})
	}
}

func beginFromSession(t *testing.T, s testvectors.Session) CardSession {
	t.Helper()
	f := s.InitFields
	seq, _ := strconv.ParseUint(f.SequenceCounter, 16, 16)
	ic, err := apdu.Parse(hx(t, s.InitUpdate.Command))
	if err != nil {
		t.Fatal(err)
	}
	cs, resp, err := BeginCard(keysOf(t, s), byteOf(t, s.KeyVersion), iOf(t, s), hx(t, f.KDD), uint16(seq), ic.Data, hx(t, f.CardChallenge))
	if err != nil {
		t.Fatal(err)
	}
	if up(resp) != s.InitUpdate.Response {
		t.Fatalf("INITIALIZE UPDATE response = %X, want %s", resp, s.InitUpdate.Response)
	}
	return cs
}

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
			cs := beginFromSession(t, s)
			roundTrip(t, &cs)
			ea, _ := apdu.Parse(hx(t, s.ExtAuth.Command))
			if err := cs.ExternalAuthenticate(ea); err != nil {
				t.Fatal(err)
			}
			for n, c := range s.Commands {
				roundTrip(t, &cs)
				w, err := apdu.Parse(hx(t, c.Wrapped))
				if err != nil {
					t.Fatal(err)
				}
				p, err := cs.UnwrapCommand(w)
				if err != nil {
					t.Fatalf("command %d rejected: %v", n, err)
				}
				if up(p.Bytes()) != c.Plain {
					t.Fatalf("command %d unwrapped = %s, want %s", n, p.Hex(), c.Plain)
				}
				if n == 0 && !cs.FirstCMAC() {
					t.Fatal("FirstCMAC")
				}
				if c.ResponsePlain != nil && c.SW != nil {
					got := cs.WrapResponse(hx(t, *c.ResponsePlain), swOf(t, *c.SW))
					if up(got) != *c.ResponseWrapped+*c.SW {
						t.Fatalf("command %d response %X", n, got)
					}
				}
			}
		})
	}
}

func TestCardRejectsFlippedBit(t *testing.T) {
	for _, s := range testvectors.Sessions(t, sessionsFile) {
		t.Run(s.Name, func(t *testing.T) {
			w := hx(t, s.Commands[0].Wrapped)
			for _, pos := range []int{3, 5, len(w) - 2} {
				cs := beginFromSession(t, s)
				ea, _ := apdu.Parse(hx(t, s.ExtAuth.Command))
				if err := cs.ExternalAuthenticate(ea); err != nil {
					t.Fatal(err)
				}
				bad := append([]byte(nil), w...)
				bad[pos] ^= 0x01
				cmd, err := apdu.Parse(bad)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := cs.UnwrapCommand(cmd); apdu.SWOf(err, 0) != apdu.SWSecurityNotSatisfied {
					t.Fatalf("bit at %d: %v", pos, err)
				}
				if cs.State != StateAborted {
					t.Fatal("not aborted")
				}
				good, _ := apdu.Parse(w)
				if _, err := cs.UnwrapCommand(good); apdu.SWOf(err, 0) != apdu.SWSecurityNotSatisfied {
					t.Fatalf("aborted session accepted a command: %v", err)
				}
			}
		})
	}
}

func TestCardExternalAuthenticateErrors(t *testing.T) {
	s := testvectors.Sessions(t, sessionsFile)[1]
	ea := hx(t, s.ExtAuth.Command)
	for _, c := range []struct {
		pos int
		sw  uint16
		err error
	}{{7, apdu.SWAuthenticationFailed, ErrHostCryptogram}, {len(ea) - 1, apdu.SWSecurityNotSatisfied, ErrCMAC}, {2, apdu.SWIncorrectP1P2, ErrLevel}} {
		cs := beginFromSession(t, s)
		bad := append([]byte(nil), ea...)
		bad[c.pos] ^= 0x04
		cmd, _ := apdu.Parse(bad)
		err := cs.ExternalAuthenticate(cmd)
		if !errors.Is(err, c.err) || apdu.SWOf(err, 0) != c.sw {
			t.Fatalf("pos %d: %v", c.pos, err)
		}
	}
	cs := beginFromSession(t, s)
	cmd, _ := apdu.Parse(ea)
	if err := cs.ExternalAuthenticate(cmd); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.UnwrapCommand(apdu.Command{CLA: 0x80, INS: 0xF2, P1: 0x20, P2: 0x02, Data: []byte{0x4F, 0}, Le: 0}); !errors.Is(err, ErrSecurityLevel) {
		t.Fatalf("plain command accepted at level 01: %v", err)
	}
}

func TestHostRejectsBadCardCryptogram(t *testing.T) {
	s := testvectors.Sessions(t, sessionsFile)[0]
	h, _ := NewHost(keysOf(t, s), HostOptions{})
	h.InitializeUpdate(0x20, hx(t, s.HostChallenge))
	resp := hx(t, s.InitUpdate.Response)
	resp[27] ^= 1
	if err := h.ProcessInitializeUpdate(resp); !errors.Is(err, ErrCardCryptogram) {
		t.Fatal(err)
	}
	if err := h.ProcessInitializeUpdateResponse([]byte{0x6A, 0x88}); apdu.SWOf(err, 0) != 0x6A88 {
		t.Fatal(err)
	}
}

// Host and card agree when the card derives a pseudo-random challenge (i=55).
func TestPseudoRandomRoundTrip(t *testing.T) {
	keys := StaticKeys{ENC: hx(t, "404142434445464748494A4B4C4D4E4F"), MAC: hx(t, "404142434445464748494A4B4C4D4E4F"), DEK: hx(t, "404142434445464748494A4B4C4D4E4F")}
	aid := hx(t, "A000000151000000")
	h, err := NewHost(keys, HostOptions{I: 0x55, AID: aid})
	if err != nil {
		t.Fatal(err)
	}
	iu, _ := h.InitializeUpdate(0, nil)
	ic, _ := apdu.Parse(iu)
	cs, resp, err := BeginCard(keys, 0x01, 0x55, make([]byte, 10), 0x0042, ic.Data, nil, WithAID(aid))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := PseudoRandomChallenge(keys.MAC, 0x42, aid)
	if !bytes.Equal(cs.CardChallenge, want) {
		t.Fatal("challenge")
	}
	if err := h.ProcessInitializeUpdate(resp); err != nil {
		t.Fatal(err)
	}
	for _, level := range []byte{LevelCDecCMAC} {
		ea, _ := h.ExternalAuthenticate(level)
		eac, _ := apdu.Parse(ea)
		if err := cs.ExternalAuthenticate(eac); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"80F22002024F0000", "80CA006600", "80F22002", "80E2900006DF0103010203"} {
		w, err := h.Wrap(hx(t, p))
		if err != nil {
			t.Fatal(err)
		}
		wc, _ := apdu.Parse(w)
		got, err := cs.UnwrapCommand(wc)
		if err != nil || got.Hex() != p {
			t.Fatalf("%s -> %s %v", p, got.Hex(), err)
		}
	}
}

type componentFile struct {
	Components []json.RawMessage `json:"component_vectors"`
}

func components(t *testing.T) map[string]json.RawMessage {
	var f componentFile
	testvectors.JSON(t, sessionsFile, &f)
	out := map[string]json.RawMessage{}
	for _, raw := range f.Components {
		var n struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(raw, &n); err != nil {
			t.Fatal(err)
		}
		out[n.Name] = raw
	}
	if len(out) != 8 {
		t.Fatalf("want 8 component vectors, got %d", len(out))
	}
	return out
}

func decode(t *testing.T, raw json.RawMessage, v any) {
	t.Helper()
	if len(raw) == 0 {
		t.Fatal("component vector missing")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

func kcv(t *testing.T, key []byte) string {
	t.Helper()
	k, err := gpcrypto.DESKCV(key)
	if err != nil {
		t.Fatal(err)
	}
	return up(k)
}

func seqOf(t *testing.T, s string) uint16 {
	v, err := strconv.ParseUint(s, 16, 16)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(v)
}

func TestComponentVectors(t *testing.T) {
	cv := components(t)
	t.Run("keycard_go_derive_s_enc", func(t *testing.T) {
		var v struct {
			Key string `json:"static_enc"`
			Seq string `json:"sequence_counter"`
			Exp string `json:"expected_s_enc"`
		}
		decode(t, cv["keycard_go_derive_s_enc"], &v)
		k, err := DeriveSessionKey(hx(t, v.Key), constENC, seqOf(t, v.Seq))
		if err != nil || up(k) != v.Exp {
			t.Fatalf("%X %v", k, err)
		}
	})
	t.Run("keycard_go_card_cryptogram", func(t *testing.T) {
		var v struct {
			SEnc string `json:"s_enc"`
			HC   string `json:"host_challenge"`
			Seq  string `json:"sequence_counter"`
			CC   string `json:"card_challenge"`
			Exp  string `json:"expected"`
		}
		decode(t, cv["keycard_go_card_cryptogram"], &v)
		c, err := CardCryptogram(hx(t, v.SEnc), hx(t, v.HC), seqOf(t, v.Seq), hx(t, v.CC))
		if err != nil || up(c) != v.Exp {
			t.Fatalf("%X %v", c, err)
		}
	})
	t.Run("keycard_go_init_update", func(t *testing.T) {
		var v struct {
			Keys    map[string]string `json:"static_keys"`
			HC      string            `json:"host_challenge"`
			Resp    string            `json:"initialize_update_response"`
			SW      string            `json:"sw"`
			Derived map[string]string `json:"derived"`
		}
		decode(t, cv["keycard_go_init_update"], &v)
		keys := StaticKeys{ENC: hx(t, v.Keys["enc"]), MAC: hx(t, v.Keys["mac"])}
		h, err := NewHost(keys, HostOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h.InitializeUpdate(0, hx(t, v.HC))
		if err := h.ProcessInitializeUpdateResponse(append(hx(t, v.Resp), hx(t, v.SW)...)); err != nil {
			t.Fatal(err)
		}
		if up(seqBytes(h.InitUpdate().SequenceCounter)) != v.Derived["sequence_counter"] || up(h.SessionKeys().ENC) != v.Derived["s_enc"] {
			t.Fatal("derived values")
		}
		ea, err := h.ExternalAuthenticate(LevelCMAC)
		if err != nil || up(ea[5:13]) != v.Derived["host_cryptogram"] {
			t.Fatalf("host cryptogram %X %v", ea, err)
		}
	})
	t.Run("keycard_go_scp02_wrapper", func(t *testing.T) {
		var v struct {
			Key   string `json:"c_mac_key"`
			Steps []struct {
				Plain, Wrapped, ICV string
			} `json:"steps"`
		}
		decode(t, cv["keycard_go_scp02_wrapper"], &v)
		if len(v.Steps) != 2 {
			t.Fatalf("want 2 steps, got %d", len(v.Steps))
		}
		sk := SessionKeys{CMAC: hx(t, v.Key)}
		var chain []byte
		for n, st := range v.Steps {
			icv, err := nextICV(sk.CMAC, chain, DefaultI)
			if err != nil || up(icv) != st.ICV {
				t.Fatalf("step %d ICV %X %v", n, icv, err)
			}
			c, _ := apdu.Parse(hx(t, st.Plain))
			w, next, err := wrap(sk, DefaultI, LevelCMAC, chain, c)
			if err != nil || w.Hex() != st.Wrapped {
				t.Fatalf("step %d wrapped %s %v", n, w.Hex(), err)
			}
			chain = next
		}
	})
	t.Run("gppro_scp02_session_key_kcvs", func(t *testing.T) {
		var v struct {
			Key     string            `json:"static_key"`
			Seq     string            `json:"sequence_counter"`
			KCV     map[string]string `json:"kcv"`
			Derived map[string]string `json:"derived_session_keys"`
		}
		decode(t, cv["gppro_scp02_session_key_kcvs"], &v)
		k := hx(t, v.Key)
		sk, err := DeriveSessionKeys(StaticKeys{ENC: k, MAC: k, DEK: k}, seqOf(t, v.Seq))
		if err != nil {
			t.Fatal(err)
		}
		for name, key := range map[string][]byte{"s_enc": sk.ENC, "c_mac": sk.CMAC, "dek": sk.DEK, "r_mac": sk.RMAC} {
			if up(key) != v.Derived[name] || kcv(t, key) != v.KCV[name] {
				t.Fatalf("%s = %X", name, key)
			}
		}
	})
	t.Run("gppro_scp02_put_key_encryption", func(t *testing.T) {
		var v struct {
			Key string `json:"static_keys"`
			Seq string `json:"sequence_counter"`
			New string `json:"key_to_encrypt"`
			Exp string `json:"expected_encrypted"`
			KCV string `json:"kcv"`
		}
		decode(t, cv["gppro_scp02_put_key_encryption"], &v)
		k := hx(t, v.Key)
		dek, err := DeriveSessionKey(k, constDEK, seqOf(t, v.Seq))
		if err != nil {
			t.Fatal(err)
		}
		enc, err := EncryptKey(dek, hx(t, v.New))
		if err != nil || up(enc) != v.Exp {
			t.Fatalf("%X %v", enc, err)
		}
		cs := CardSession{DEK: dek}
		dec, err := cs.DecryptKey(enc)
		if err != nil || up(dec) != v.New || kcv(t, dec) != v.KCV {
			t.Fatalf("decrypt %X %v", dec, err)
		}
	})
}
