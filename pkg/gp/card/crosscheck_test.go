package card

import (
	"bytes"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
)

// TestPrivateCryptoMatchesShared checks the package's remaining private
// primitive, kdf3 (gpcrypto.KDF3's template for any diversification
// constant), against pkg/gp/gpcrypto on the same inputs, so that the card
// and the shared host side cannot drift apart. Everything else the card
// computes is gpcrypto's.
func TestPrivateCryptoMatchesShared(t *testing.T) {
	for _, n := range []int{16, 24, 32} {
		key := bytes.Repeat([]byte{0x3C}, n)
		kdd := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
		for k := byte(1); k <= 3; k++ {
			a, _ := kdf3(key, k, kdd)
			b, err := gpcrypto.KDF3(key, kdd, k)
			if err != nil || !bytes.Equal(a, b) {
				t.Fatalf("KDF3 differs (key %d, k %d)", n, k)
			}
		}
	}
}
