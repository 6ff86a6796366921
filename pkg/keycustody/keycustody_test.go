package keycustody

import (
	"bytes"
	"strings"
	"testing"
)

func TestTransportKeyRoundTrip(t *testing.T) {
	ktk := bytes.Repeat([]byte{0x5A}, 16)
	w, err := WrapTransportKey(DemoKeyExchangeKey, ktk)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(w, "5A5A5A5A") {
		t.Fatalf("wrapped key shows the key: %s", w)
	}
	got, err := UnwrapTransportKey(DemoKeyExchangeKey, w)
	if err != nil || !bytes.Equal(got, ktk) {
		t.Fatalf("unwrap: %X %v", got, err)
	}
	if _, err := UnwrapTransportKey(bytes.Repeat([]byte{1}, 32), w); err == nil {
		t.Fatal("unwrapped under another key-exchange key")
	}
}

func TestTemporaryKeysRoundTrip(t *testing.T) {
	ktk := bytes.Repeat([]byte{0x01}, 32)
	enc, mac, dek := bytes.Repeat([]byte{0x11}, 16), bytes.Repeat([]byte{0x22}, 16), bytes.Repeat([]byte{0x33}, 16)
	w, err := WrapTemporaryKeys(ktk, enc, mac, dek)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 2*(48+8) {
		t.Fatalf("wrapped length %d", len(w))
	}
	e, m, d, err := UnwrapTemporaryKeys(ktk, w)
	if err != nil || !bytes.Equal(e, enc) || !bytes.Equal(m, mac) || !bytes.Equal(d, dek) {
		t.Fatalf("unwrap: %v", err)
	}
	if _, _, _, err := UnwrapTemporaryKeys(bytes.Repeat([]byte{0x02}, 32), w); err == nil {
		t.Fatal("unwrapped under another key-transport key")
	}
}

func TestParseAESKeyNeverEchoesValue(t *testing.T) {
	_, err := ParseAESKey("X", "00112233445566778899AABBCCDDEE")
	if err == nil || strings.Contains(err.Error(), "0011") {
		t.Fatalf("err %v", err)
	}
}
