package card

// Private symmetric primitives for the card side of SCP02/SCP03, PUT KEY,
// DAP, tokens and receipts. They duplicate a small part of what pkg/gp/gpcrypto
// provides so that this package does not depend on the exact shape of that
// package while it is being written; every function is checked against the
// published vectors in shared/testdata by crypto_test.go.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"errors"
)

var errKeyLength = errors.New("card: unsupported key length")

// aesCMAC computes the AES-CMAC (NIST SP 800-38B, RFC 4493) of msg.
func aesCMAC(key, msg []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, errKeyLength
	}
	return cmacWith(b, msg), nil
}

func cmacWith(b cipher.Block, msg []byte) []byte {
	const bs = 16
	l := make([]byte, bs)
	b.Encrypt(l, l)
	k1 := shiftLeft(l)
	k2 := shiftLeft(k1)
	n := (len(msg) + bs - 1) / bs
	complete := n > 0 && len(msg)%bs == 0
	if n == 0 {
		n = 1
	}
	last := make([]byte, bs)
	if complete {
		copy(last, msg[(n-1)*bs:])
		xorInto(last, k1)
	} else {
		rem := msg[(n-1)*bs:]
		copy(last, rem)
		last[len(rem)] = 0x80
		xorInto(last, k2)
	}
	x := make([]byte, bs)
	for i := 0; i < n-1; i++ {
		xorInto(x, msg[i*bs:(i+1)*bs])
		b.Encrypt(x, x)
	}
	xorInto(x, last)
	b.Encrypt(x, x)
	return x
}

func shiftLeft(in []byte) []byte {
	out := make([]byte, len(in))
	var carry byte
	for i := len(in) - 1; i >= 0; i-- {
		out[i] = in[i]<<1 | carry
		carry = in[i] >> 7
	}
	if carry != 0 {
		out[len(out)-1] ^= 0x87
	}
	return out
}

func xorInto(dst, src []byte) {
	for i := range dst {
		if i < len(src) {
			dst[i] ^= src[i]
		}
	}
}

// scp03KDF is the Amd D 4.1.5 key derivation: NIST SP 800-108 counter mode
// with AES-CMAC, label = 11 x 00 || constant, separator 00, L in bits (2
// bytes), counter i (1 byte), then the context.
func scp03KDF(key []byte, constant byte, lBits int, context []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, errKeyLength
	}
	n := (lBits + 127) / 128
	out := make([]byte, 0, n*16)
	in := make([]byte, 16+len(context))
	in[11] = constant
	in[13] = byte(lBits >> 8)
	in[14] = byte(lBits)
	copy(in[16:], context)
	for i := 1; i <= n; i++ {
		in[15] = byte(i)
		out = append(out, cmacWith(b, in)...)
	}
	return out[:lBits/8], nil
}

// kdf3 is the GPPro "kdf3" diversification of an issuer master key (gp-card.md
// 3.2): CMAC(master, i || 00 00 00 || k || 00 || KDD) for i = 1 (and 2 when
// the master key is longer than 16 bytes).
func kdf3(master []byte, k byte, kdd []byte) ([]byte, error) {
	b, err := aes.NewCipher(master)
	if err != nil {
		return nil, errKeyLength
	}
	in := make([]byte, 0, 6+len(kdd))
	in = append(in, 0, 0, 0, 0, k, 0)
	in = append(in, kdd...)
	in[0] = 1
	out := cmacWith(b, in)
	if len(master) > 16 {
		in[0] = 2
		out = append(out, cmacWith(b, in)...)
		out = out[:len(master)]
	}
	return out, nil
}

// aesCBC encrypts or decrypts data (a multiple of 16 bytes) in CBC mode.
func aesCBC(key, iv, data []byte, encrypt bool) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, errKeyLength
	}
	if len(data)%16 != 0 {
		return nil, errors.New("card: data is not a multiple of the block size")
	}
	if iv == nil {
		iv = make([]byte, 16)
	}
	out := make([]byte, len(data))
	if encrypt {
		cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, data)
	} else {
		cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, data)
	}
	return out, nil
}

func aesECB(key, block []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, errKeyLength
	}
	out := make([]byte, 16)
	b.Encrypt(out, block)
	return out, nil
}

// des3Key expands a 16-byte double-length key to the 24-byte K1 K2 K1 form.
func des3Key(k []byte) ([]byte, error) {
	switch len(k) {
	case 16:
		return append(append([]byte{}, k...), k[:8]...), nil
	case 24:
		return k, nil
	}
	return nil, errKeyLength
}

func des3Cipher(k []byte) (cipher.Block, error) {
	kk, err := des3Key(k)
	if err != nil {
		return nil, err
	}
	b, err := des.NewTripleDESCipher(kk)
	if err != nil {
		return nil, errKeyLength
	}
	return b, nil
}

func des3CBC(key, iv, data []byte, encrypt bool) ([]byte, error) {
	b, err := des3Cipher(key)
	if err != nil {
		return nil, err
	}
	if len(data)%8 != 0 {
		return nil, errors.New("card: data is not a multiple of the block size")
	}
	if iv == nil {
		iv = make([]byte, 8)
	}
	out := make([]byte, len(data))
	if encrypt {
		cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, data)
	} else {
		cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, data)
	}
	return out, nil
}

func des3ECB(key, data []byte, encrypt bool) ([]byte, error) {
	b, err := des3Cipher(key)
	if err != nil {
		return nil, err
	}
	if len(data)%8 != 0 {
		return nil, errors.New("card: data is not a multiple of the block size")
	}
	out := make([]byte, len(data))
	for i := 0; i < len(data); i += 8 {
		if encrypt {
			b.Encrypt(out[i:], data[i:i+8])
		} else {
			b.Decrypt(out[i:], data[i:i+8])
		}
	}
	return out, nil
}

// pad80 appends 80 and zeros up to a multiple of bs (ISO 9797-1 method 2);
// it always adds at least one byte.
func pad80(data []byte, bs int) []byte {
	out := make([]byte, len(data), len(data)+bs)
	copy(out, data)
	out = append(out, 0x80)
	for len(out)%bs != 0 {
		out = append(out, 0)
	}
	return out
}

// unpad80 removes ISO 9797-1 method 2 padding.
func unpad80(data []byte) ([]byte, bool) {
	for i := len(data) - 1; i >= 0; i-- {
		switch data[i] {
		case 0:
			continue
		case 0x80:
			return data[:i], true
		}
		return nil, false
	}
	return nil, false
}

// fullDES3MAC is the ISO 9797-1 MAC algorithm 1 with 3DES (SCP02
// cryptograms, GPC E.4.2): 3DES-CBC over the padded data, ICV zero, last block.
func fullDES3MAC(key, data []byte) ([]byte, error) {
	enc, err := des3CBC(key, nil, pad80(data, 8), true)
	if err != nil {
		return nil, err
	}
	return enc[len(enc)-8:], nil
}

// retailMAC is ISO 9797-1 MAC algorithm 3 (single DES CBC with the first key
// half, 3DES on the last block) over data padded by the caller or here
// (GPC E.4.4). icv may be nil (zero).
func retailMAC(key, icv, data []byte) ([]byte, error) {
	if len(key) != 16 {
		return nil, errKeyLength
	}
	k1, err := des.NewCipher(key[:8])
	if err != nil {
		return nil, errKeyLength
	}
	k3, err := des3Cipher(key)
	if err != nil {
		return nil, err
	}
	p := pad80(data, 8)
	x := make([]byte, 8)
	if icv != nil {
		copy(x, icv)
	}
	for i := 0; i < len(p)-8; i += 8 {
		xorInto(x, p[i:i+8])
		k1.Encrypt(x, x)
	}
	xorInto(x, p[len(p)-8:])
	k3.Encrypt(x, x)
	return x, nil
}

func desECB1(key8, block []byte) ([]byte, error) {
	b, err := des.NewCipher(key8)
	if err != nil {
		return nil, errKeyLength
	}
	out := make([]byte, 8)
	b.Encrypt(out, block)
	return out, nil
}

// kcvAES is the Amd D 7.2 key check value: AES-ECB(key, 16 x 01)[0:3].
func kcvAES(key []byte) ([]byte, error) {
	one := make([]byte, 16)
	for i := range one {
		one[i] = 1
	}
	out, err := aesECB(key, one)
	if err != nil {
		return nil, err
	}
	return out[:3], nil
}

// kcvDES is the GPC 11.8.2.3 DES key check value: 3DES-ECB(key, 8 x 00)[0:3].
func kcvDES(key []byte) ([]byte, error) {
	out, err := des3ECB(key, make([]byte, 8), true)
	if err != nil {
		return nil, err
	}
	return out[:3], nil
}

func equalCT(a, b []byte) bool { return len(a) == len(b) && subtle.ConstantTimeCompare(a, b) == 1 }
