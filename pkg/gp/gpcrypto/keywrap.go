package gpcrypto

import (
	"encoding/binary"
	"fmt"
)

// defaultKeyWrapIV is the RFC 3394 2.2.3.1 default initial value.
var defaultKeyWrapIV = []byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6}

// AESKeyWrap wraps plaintext key data (a multiple of 8 bytes, at least 16)
// under kek with the RFC 3394 algorithm and the default IV. The result is 8
// bytes longer than the input. The standard library has no key wrap, and
// key-management exports between services need one.
func AESKeyWrap(kek, plaintext []byte) ([]byte, error) {
	b, err := NewAES(kek)
	if err != nil {
		return nil, err
	}
	if len(plaintext) < 16 || len(plaintext)%8 != 0 {
		return nil, fmt.Errorf("%w: key data of %d bytes", ErrDataLength, len(plaintext))
	}
	n := len(plaintext) / 8
	a := append([]byte(nil), defaultKeyWrapIV...)
	r := append([]byte(nil), plaintext...)
	var buf [16]byte
	for j := 0; j <= 5; j++ {
		for i := 1; i <= n; i++ {
			copy(buf[:8], a)
			copy(buf[8:], r[(i-1)*8:i*8])
			b.Encrypt(buf[:], buf[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a, binary.BigEndian.Uint64(buf[:8])^t)
			copy(r[(i-1)*8:i*8], buf[8:])
		}
	}
	return append(a, r...), nil
}

// AESKeyUnwrap reverses AESKeyWrap. It returns ErrIntegrity when the
// recovered IV is not the default one (wrong KEK or altered ciphertext).
func AESKeyUnwrap(kek, ciphertext []byte) ([]byte, error) {
	b, err := NewAES(kek)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < 24 || len(ciphertext)%8 != 0 {
		return nil, fmt.Errorf("%w: wrapped key of %d bytes", ErrDataLength, len(ciphertext))
	}
	n := len(ciphertext)/8 - 1
	a := append([]byte(nil), ciphertext[:8]...)
	r := append([]byte(nil), ciphertext[8:]...)
	var buf [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(buf[:8], binary.BigEndian.Uint64(a)^t)
			copy(buf[8:], r[(i-1)*8:i*8])
			b.Decrypt(buf[:], buf[:])
			copy(a, buf[:8])
			copy(r[(i-1)*8:i*8], buf[8:])
		}
	}
	if !Equal(a, defaultKeyWrapIV) {
		return nil, ErrIntegrity
	}
	return r, nil
}
