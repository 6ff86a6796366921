package adapters

import (
	"bytes"
	"testing"
)

func TestKeySealerBindsSEAndSD(t *testing.T) {
	s, err := NewKeySealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	plain := bytes.Repeat([]byte{0x42}, 48)
	sealed, err := s.Seal(plain, "0100000000000001", "A000000555AA01")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, plain[:16]) {
		t.Fatal("sealed value contains the keys")
	}
	if got, err := s.Open(sealed, "0100000000000001", "a000000555aa01"); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %v", err)
	}
	for _, where := range [][2]string{{"0100000000000002", "A000000555AA01"}, {"0100000000000001", "A000000555AA02"}} {
		if _, err := s.Open(sealed, where[0], where[1]); err == nil {
			t.Errorf("sealed keys opened for SE %s SD %s", where[0], where[1])
		}
	}
	other, _ := NewKeySealer(bytes.Repeat([]byte{8}, 32))
	if _, err := other.Open(sealed, "0100000000000001", "A000000555AA01"); err == nil {
		t.Error("sealed keys opened under another KEK")
	}
	if _, err := NewKeySealer(bytes.Repeat([]byte{7}, 16)); err == nil {
		t.Error("AES-128 KEK accepted")
	}
}
