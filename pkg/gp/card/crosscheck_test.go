package card

import (
	"bytes"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
)

// TestPrivateCryptoMatchesShared checks the package's private primitives
// against pkg/gp/gpcrypto on the same inputs, so that the card and the
// shared host side cannot drift apart.
func TestPrivateCryptoMatchesShared(t *testing.T) {
	for _, n := range []int{16, 24, 32} {
		key := bytes.Repeat([]byte{0x3C}, n)
		for _, l := range []int{0, 1, 15, 16, 17, 40, 64} {
			msg := bytes.Repeat([]byte{0xA5}, l)
			a, _ := aesCMAC(key, msg)
			b, err := gpcrypto.CMAC(key, msg)
			if err != nil || !bytes.Equal(a, b) {
				t.Fatalf("CMAC differs (key %d, msg %d)", n, l)
			}
		}
		ctx := bytes.Repeat([]byte{7}, 16)
		a, _ := scp03KDF(key, 0x04, n*8, ctx)
		b, err := gpcrypto.SCP03KDF(key, 0x04, n*8, ctx)
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("SCP03 KDF differs (key %d)", n)
		}
		kdd := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
		for k := byte(1); k <= 3; k++ {
			a, _ := kdf3(key, k, kdd)
			b, err := gpcrypto.KDF3(key, kdd, k)
			if err != nil || !bytes.Equal(a, b) {
				t.Fatalf("KDF3 differs (key %d, k %d)", n, k)
			}
		}
		a, _ = kcvAES(key)
		b, _ = gpcrypto.AESKCV(key)
		if !bytes.Equal(a, b) {
			t.Fatalf("AES KCV differs")
		}
	}
	des := bytes.Repeat([]byte{0x40, 0x41}, 8)
	a, _ := kcvDES(des)
	b, _ := gpcrypto.DESKCV(des)
	if !bytes.Equal(a, b) {
		t.Fatalf("DES KCV differs")
	}
	data := bytes.Repeat([]byte{0x11}, 21)
	a, _ = retailMAC(des, nil, data)
	b, err := gpcrypto.MACAlg3(des, make([]byte, 8), gpcrypto.Pad80(data, 8))
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("retail MAC differs: %X %X %v", a, b, err)
	}
}
