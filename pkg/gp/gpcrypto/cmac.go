// Package gpcrypto holds the symmetric primitives GlobalPlatform secure
// channels, key management and Delegated Management need: AES-CMAC
// (RFC 4493), the NIST SP 800-108 counter-mode KDF with a CMAC PRF (the SCP03
// KDF, Amd D 4.1.5), key check values, the ISO/IEC 9797-1 DES MACs used by
// SCP02 (GPC Appendix E), 80-padding, off-card key diversification templates
// and the RFC 3394 AES key wrap.
//
// Every function validates its inputs and returns an error instead of
// panicking; error messages never contain key material.
package gpcrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"fmt"
)

// ErrKeyLength reports a key of a length the algorithm does not accept.
var ErrKeyLength = errors.New("gpcrypto: invalid key length")

// ErrDataLength reports input whose length is not a multiple of the block
// size or otherwise wrong for the operation.
var ErrDataLength = errors.New("gpcrypto: invalid data length")

// ErrPadding reports a missing or malformed 80 00.. padding.
var ErrPadding = errors.New("gpcrypto: invalid padding")

// ErrIntegrity reports a failed integrity check (AES key unwrap).
var ErrIntegrity = errors.New("gpcrypto: integrity check failed")

func keyLenErr(alg string, n int) error {
	return fmt.Errorf("%w: %s does not accept %d-byte keys", ErrKeyLength, alg, n)
}

// NewAES returns an AES block cipher for a 16, 24 or 32-byte key.
func NewAES(key []byte) (cipher.Block, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, keyLenErr("AES", len(key))
	}
	return aes.NewCipher(key)
}

// dbl multiplies a block by x in GF(2^n) as RFC 4493 2.3 generates subkeys
// (Rb = 0x87 for 128-bit blocks, 0x1B for 64-bit blocks). The XOR is masked
// instead of branched so timing does not depend on the key.
func dbl(in []byte) []byte {
	out := make([]byte, len(in))
	var carry byte
	for i := len(in) - 1; i >= 0; i-- {
		out[i] = in[i]<<1 | carry
		carry = in[i] >> 7
	}
	rb := byte(0x87)
	if len(in) == 8 {
		rb = 0x1B
	}
	out[len(out)-1] ^= rb & (0 - carry)
	return out
}

// CMACSubkeys returns the CMAC subkeys K1 and K2 of a block cipher (RFC 4493
// 2.3).
func CMACSubkeys(b cipher.Block) (k1, k2 []byte) {
	l := make([]byte, b.BlockSize())
	b.Encrypt(l, l)
	k1 = dbl(l)
	k2 = dbl(k1)
	return k1, k2
}

// CMACBlock computes the full-length CMAC of msg with block cipher b
// (RFC 4493 for AES; NIST SP 800-38B in general).
func CMACBlock(b cipher.Block, msg []byte) []byte {
	bs := b.BlockSize()
	k1, k2 := CMACSubkeys(b)
	n := (len(msg) + bs - 1) / bs
	complete := n > 0 && len(msg)%bs == 0
	if n == 0 {
		n = 1
	}
	last := make([]byte, bs)
	if complete {
		copy(last, msg[(n-1)*bs:])
		subtle.XORBytes(last, last, k1)
	} else {
		rest := msg[(n-1)*bs:]
		copy(last, rest)
		last[len(rest)] = 0x80
		subtle.XORBytes(last, last, k2)
	}
	x := make([]byte, bs)
	for i := 0; i < n-1; i++ {
		subtle.XORBytes(x, x, msg[i*bs:(i+1)*bs])
		b.Encrypt(x, x)
	}
	subtle.XORBytes(x, x, last)
	b.Encrypt(x, x)
	return x
}

// CMAC computes the 16-byte AES-CMAC of msg (RFC 4493) under an AES-128,
// AES-192 or AES-256 key.
func CMAC(key, msg []byte) ([]byte, error) {
	b, err := NewAES(key)
	if err != nil {
		return nil, err
	}
	return CMACBlock(b, msg), nil
}

// VerifyCMAC recomputes the AES-CMAC of msg and compares its first len(mac)
// bytes (4..16) with mac in constant time.
func VerifyCMAC(key, msg, mac []byte) (bool, error) {
	if len(mac) < 4 || len(mac) > 16 {
		return false, fmt.Errorf("%w: MAC of %d bytes", ErrDataLength, len(mac))
	}
	full, err := CMAC(key, msg)
	if err != nil {
		return false, err
	}
	return Equal(full[:len(mac)], mac), nil
}

// Equal compares two byte strings in constant time (for equal lengths). Use
// it wherever a MAC, cryptogram or KCV received from the other side is
// checked.
func Equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
