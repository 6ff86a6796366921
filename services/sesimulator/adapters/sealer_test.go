package adapters

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealerRoundTripAndBinding(t *testing.T) {
	s, err := NewStateSealer(bytes.Repeat([]byte{0x11}, 32))
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte(`{"keys":"secret card state"}`)
	sealed, err := s.Seal("0102030405060708", plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("secret")) {
		t.Fatal("sealed state contains the plaintext")
	}
	got, err := s.Open("0102030405060708", sealed)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open("0102030405060709", sealed); !errors.Is(err, ErrUnsealable) {
		t.Errorf("state of one SE opened under another SE id: %v", err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	if _, err := s.Open("0102030405060708", tampered); !errors.Is(err, ErrUnsealable) {
		t.Errorf("tampered state opened: %v", err)
	}
	other, _ := NewStateSealer(bytes.Repeat([]byte{0x22}, 16))
	if _, err := other.Open("0102030405060708", sealed); !errors.Is(err, ErrUnsealable) {
		t.Errorf("state opened with another KEK: %v", err)
	}
	if _, err := NewStateSealer([]byte{1, 2, 3}); err == nil {
		t.Error("3-byte KEK accepted")
	}
}
