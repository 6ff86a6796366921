package scp03

import (
	"bytes"
	"errors"
	"strconv"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/gp/internal/testvectors"
)

type derived struct {
	PseudoRandom struct {
		Label string `json:"kdf_label"`
		Cases []struct {
			Session   string `json:"session"`
			KeyENC    string `json:"key_enc"`
			Seq       string `json:"sequence_counter"`
			AID       string `json:"sd_aid"`
			Context   string `json:"kdf_context"`
			Challenge string `json:"card_challenge"`
		} `json:"cases"`
	} `json:"pseudo_random_challenge"`
	Inter struct {
		Session       string `json:"session"`
		Context       string `json:"context"`
		KDFInputSENC  string `json:"kdf_input_s_enc"`
		SENC          string `json:"s_enc"`
		SMAC          string `json:"s_mac"`
		SRMAC         string `json:"s_rmac"`
		CardCrypto    string `json:"card_cryptogram"`
		HostCrypto    string `json:"host_cryptogram"`
		ExtAuthCMAC   string `json:"ext_auth_full_cmac"`
		Counter       int    `json:"c_enc_counter"`
		CEncICV       string `json:"c_enc_icv"`
		Ciphertext    string `json:"c_enc_ciphertext"`
		CMACFull      string `json:"c_mac_full"`
		Wrapped       string `json:"wrapped_command"`
		REncICV       string `json:"r_enc_icv"`
		RMAC          string `json:"r_mac"`
		ResponsePlain string `json:"response_plain"`
	} `json:"scp03_session_intermediates"`
	PutKey struct {
		DEK  string `json:"static_dek"`
		Keys []struct {
			Key      string `json:"key"`
			KeyBlock string `json:"key_block"`
		} `json:"keys"`
	} `json:"put_key_scp03"`
}

func TestPseudoRandomChallenges(t *testing.T) {
	var d derived
	testvectors.JSON(t, "gp-derived.json", &d)
	if len(d.PseudoRandom.Cases) != 4 {
		t.Fatalf("want 4 cases")
	}
	for _, c := range d.PseudoRandom.Cases {
		seq, _ := strconv.ParseUint(c.Seq, 16, 32)
		got := PseudoRandomChallenge(hx(t, c.KeyENC), uint32(seq), hx(t, c.AID))
		if up(got) != c.Challenge {
			t.Errorf("%s: %X, want %s", c.Session, got, c.Challenge)
		}
		// The KDF label and context as the file spells them.
		ch, _ := gpcrypto.CounterKDF(hx(t, c.KeyENC), 64, gpcrypto.KDFParams{
			Location: gpcrypto.CounterMiddleFixed, CounterBits: 8,
			Before: append(hx(t, d.PseudoRandom.Label), 0x00, 0x00, 0x40), After: hx(t, c.Context),
		})
		if up(ch) != c.Challenge {
			t.Errorf("%s: KDF view %X", c.Session, ch)
		}
	}
	// Every pseudo-random session of the transcript file reproduces too.
	n := 0
	for _, s := range testvectors.Sessions(t, sessionsFile) {
		if byteOf(t, s.InitFields.I)&IPseudoRandom == 0 {
			continue
		}
		seq, _ := strconv.ParseUint(s.InitFields.SequenceCounter, 16, 32)
		if got := PseudoRandomChallenge(hx(t, s.StaticKeys.ENC), uint32(seq), hx(t, s.PseudoRandomAID)); up(got) != s.InitFields.CardChallenge {
			t.Errorf("%s: challenge %X", s.Name, got)
		}
		n++
	}
	if n != 14 {
		t.Fatalf("%d pseudo-random sessions", n)
	}
	if PseudoRandomChallenge(make([]byte, 5), 1, nil) != nil || PseudoRandomChallenge(make([]byte, 16), 1<<24, nil) != nil {
		t.Fatal("invalid inputs must give nil")
	}
}

func TestSessionIntermediates(t *testing.T) {
	var d derived
	testvectors.JSON(t, "gp-derived.json", &d)
	in := d.Inter
	var s testvectors.Session
	for _, x := range testvectors.Sessions(t, sessionsFile) {
		if x.Name == in.Session {
			s = x
		}
	}
	if s.Name == "" {
		t.Fatalf("session %s not found", in.Session)
	}
	ctx := append(hx(t, s.HostChallenge), hx(t, s.InitFields.CardChallenge)...)
	if up(ctx) != in.Context {
		t.Fatal("context")
	}
	// KDF input of one PRF call: label || 00 || L || i || context.
	kdfIn := append(append(make([]byte, 11), gpcrypto.DeriveSENC, 0x00, 0x00, 0x80, 0x01), ctx...)
	if up(kdfIn) != in.KDFInputSENC {
		t.Fatalf("KDF input %X", kdfIn)
	}
	senc, _ := gpcrypto.CMAC(hx(t, s.StaticKeys.ENC), kdfIn)
	if up(senc) != in.SENC {
		t.Fatal("S-ENC from one PRF call")
	}
	sk, err := DeriveSessionKeys(keysOf(t, s), hx(t, s.HostChallenge), hx(t, s.InitFields.CardChallenge))
	if err != nil || up(sk.ENC) != in.SENC || up(sk.MAC) != in.SMAC || up(sk.RMAC) != in.SRMAC {
		t.Fatal("session keys")
	}
	cc, _ := Cryptogram(sk.MAC, gpcrypto.DeriveCardCryptogram, hx(t, s.HostChallenge), hx(t, s.InitFields.CardChallenge), false)
	hc, _ := Cryptogram(sk.MAC, gpcrypto.DeriveHostCryptogram, hx(t, s.HostChallenge), hx(t, s.InitFields.CardChallenge), false)
	if up(cc) != in.CardCrypto || up(hc) != in.HostCrypto {
		t.Fatal("cryptograms")
	}
	h, _ := NewHost(keysOf(t, s), HostOptions{})
	h.InitializeUpdate(0x30, hx(t, s.HostChallenge))
	if err := h.ProcessInitializeUpdate(hx(t, s.InitUpdate.Response)); err != nil {
		t.Fatal(err)
	}
	h.ExternalAuthenticate(LevelCDecCMACRMACRE)
	if up(h.MACChain()) != in.ExtAuthCMAC {
		t.Fatal("EXT AUTH C-MAC")
	}
	icvC, _ := icv(sk.ENC, uint32(in.Counter), false)
	if up(icvC) != in.CEncICV {
		t.Fatalf("C-ENC ICV %X", icvC)
	}
	w, err := h.Wrap(hx(t, s.Commands[0].Plain))
	if err != nil || up(w) != in.Wrapped || up(w[5:21]) != in.Ciphertext || up(h.MACChain()) != in.CMACFull {
		t.Fatalf("wrapped %X %v", w, err)
	}
	icvR, _ := icv(sk.ENC, uint32(in.Counter), true)
	if up(icvR) != in.REncICV {
		t.Fatalf("R-ENC ICV %X", icvR)
	}
	resp := hx(t, *s.Commands[0].ResponseWrapped)
	if up(resp[len(resp)-8:]) != in.RMAC {
		t.Fatal("R-MAC position")
	}
	data, sw, err := h.Unwrap(append(resp, 0x90, 0x00))
	if err != nil || sw != 0x9000 || up(data) != in.ResponsePlain {
		t.Fatalf("unwrap %X %v", data, err)
	}
}

func TestDEK(t *testing.T) {
	var d derived
	testvectors.JSON(t, "gp-derived.json", &d)
	dek := hx(t, d.PutKey.DEK)
	cs := CardSession{DEK: dek}
	for _, k := range d.PutKey.Keys {
		enc, err := EncryptKey(dek, hx(t, k.Key))
		if err != nil || up(enc) != k.KeyBlock[6:38] {
			t.Fatalf("encrypt %X %v", enc, err)
		}
		dec, err := cs.DecryptKey(enc)
		if err != nil || up(dec) != k.Key {
			t.Fatalf("decrypt %X %v", dec, err)
		}
	}
	for _, n := range []int{24, 32} {
		k := bytes.Repeat([]byte{7}, n)
		enc, err := EncryptKey(dek, k)
		if err != nil || len(enc) != 32 {
			t.Fatal(err)
		}
		dec, _ := cs.DecryptKey(enc)
		if !bytes.Equal(dec[:n], k) {
			t.Fatal("round trip")
		}
	}
	if _, err := EncryptKey(dek, make([]byte, 10)); !errors.Is(err, ErrFormat) {
		t.Fatal(err)
	}
	if _, err := cs.DecryptKey(make([]byte, 15)); apdu.SWOf(err, 0) != apdu.SWIncorrectData {
		t.Fatal(err)
	}
	if _, err := (&CardSession{}).DecryptKey(make([]byte, 16)); apdu.SWOf(err, 0) != apdu.SWReferencedDataNotFound {
		t.Fatal(err)
	}
}
