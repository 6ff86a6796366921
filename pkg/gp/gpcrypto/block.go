package gpcrypto

import (
	"crypto/cipher"
	"crypto/des"
	"fmt"
)

// Pad80 returns a copy of data padded with 80 and zero bytes to a multiple
// of blockSize (ISO/IEC 9797-1 padding method 2). The 80 byte is always
// added, so a full block of padding follows data that is already aligned.
func Pad80(data []byte, blockSize int) []byte {
	if blockSize <= 0 {
		blockSize = 16
	}
	n := len(data) + 1
	if r := n % blockSize; r != 0 {
		n += blockSize - r
	}
	out := make([]byte, n)
	copy(out, data)
	out[len(data)] = 0x80
	return out
}

// Unpad80 strips ISO/IEC 9797-1 method 2 padding: trailing zero bytes and the
// 80 before them. It rejects input without the 80 marker and, when blockSize
// is positive, padding longer than one block or input that is not
// block-aligned.
func Unpad80(data []byte, blockSize int) ([]byte, error) {
	if blockSize > 0 && len(data)%blockSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a multiple of %d", ErrPadding, len(data), blockSize)
	}
	i := len(data) - 1
	for i >= 0 && data[i] == 0 {
		i--
	}
	if i < 0 || data[i] != 0x80 {
		return nil, fmt.Errorf("%w: no 80 marker", ErrPadding)
	}
	if blockSize > 0 && len(data)-i > blockSize {
		return nil, fmt.Errorf("%w: padding longer than a block", ErrPadding)
	}
	return data[:i], nil
}

// CBCEncrypt encrypts data (a multiple of the block size) in CBC mode with
// the given IV (zero IV when iv is nil).
func CBCEncrypt(b cipher.Block, iv, data []byte) ([]byte, error) {
	bs := b.BlockSize()
	if len(data)%bs != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a multiple of %d", ErrDataLength, len(data), bs)
	}
	if iv == nil {
		iv = make([]byte, bs)
	}
	if len(iv) != bs {
		return nil, fmt.Errorf("%w: IV of %d bytes", ErrDataLength, len(iv))
	}
	out := make([]byte, len(data))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, data)
	return out, nil
}

// CBCDecrypt decrypts data (a multiple of the block size) in CBC mode with
// the given IV (zero IV when iv is nil).
func CBCDecrypt(b cipher.Block, iv, data []byte) ([]byte, error) {
	bs := b.BlockSize()
	if len(data)%bs != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a multiple of %d", ErrDataLength, len(data), bs)
	}
	if iv == nil {
		iv = make([]byte, bs)
	}
	if len(iv) != bs {
		return nil, fmt.Errorf("%w: IV of %d bytes", ErrDataLength, len(iv))
	}
	out := make([]byte, len(data))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, data)
	return out, nil
}

// ECBEncrypt encrypts data (a multiple of the block size) block by block.
func ECBEncrypt(b cipher.Block, data []byte) ([]byte, error) {
	bs := b.BlockSize()
	if len(data)%bs != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a multiple of %d", ErrDataLength, len(data), bs)
	}
	out := make([]byte, len(data))
	for i := 0; i < len(data); i += bs {
		b.Encrypt(out[i:i+bs], data[i:i+bs])
	}
	return out, nil
}

// ECBDecrypt decrypts data (a multiple of the block size) block by block.
func ECBDecrypt(b cipher.Block, data []byte) ([]byte, error) {
	bs := b.BlockSize()
	if len(data)%bs != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a multiple of %d", ErrDataLength, len(data), bs)
	}
	out := make([]byte, len(data))
	for i := 0; i < len(data); i += bs {
		b.Decrypt(out[i:i+bs], data[i:i+bs])
	}
	return out, nil
}

// AESCBCEncrypt encrypts data with AES-CBC under key with IV iv (nil = zero).
func AESCBCEncrypt(key, iv, data []byte) ([]byte, error) {
	b, err := NewAES(key)
	if err != nil {
		return nil, err
	}
	return CBCEncrypt(b, iv, data)
}

// AESCBCDecrypt decrypts data with AES-CBC under key with IV iv (nil = zero).
func AESCBCDecrypt(key, iv, data []byte) ([]byte, error) {
	b, err := NewAES(key)
	if err != nil {
		return nil, err
	}
	return CBCDecrypt(b, iv, data)
}

// TripleDESKey expands a 16-byte two-key 3DES key to the 24-byte K1 K2 K1
// form crypto/des expects; 24-byte keys are returned as copies.
func TripleDESKey(key []byte) ([]byte, error) {
	switch len(key) {
	case 16:
		out := make([]byte, 24)
		copy(out, key)
		copy(out[16:], key[:8])
		return out, nil
	case 24:
		return append([]byte(nil), key...), nil
	}
	return nil, keyLenErr("3DES", len(key))
}

// NewTripleDES returns a 3DES (EDE) block cipher for a 16 or 24-byte key.
func NewTripleDES(key []byte) (cipher.Block, error) {
	k, err := TripleDESKey(key)
	if err != nil {
		return nil, err
	}
	return des.NewTripleDESCipher(k)
}

// NewDES returns a single-DES block cipher for an 8-byte key.
func NewDES(key []byte) (cipher.Block, error) {
	if len(key) != 8 {
		return nil, keyLenErr("DES", len(key))
	}
	return des.NewCipher(key)
}

// TripleDESCBCEncrypt encrypts data with 3DES-CBC (IV nil = zero).
func TripleDESCBCEncrypt(key, iv, data []byte) ([]byte, error) {
	b, err := NewTripleDES(key)
	if err != nil {
		return nil, err
	}
	return CBCEncrypt(b, iv, data)
}

// TripleDESCBCDecrypt decrypts data with 3DES-CBC (IV nil = zero).
func TripleDESCBCDecrypt(key, iv, data []byte) ([]byte, error) {
	b, err := NewTripleDES(key)
	if err != nil {
		return nil, err
	}
	return CBCDecrypt(b, iv, data)
}

// TripleDESECBEncrypt encrypts data with 3DES-ECB.
func TripleDESECBEncrypt(key, data []byte) ([]byte, error) {
	b, err := NewTripleDES(key)
	if err != nil {
		return nil, err
	}
	return ECBEncrypt(b, data)
}

// TripleDESECBDecrypt decrypts data with 3DES-ECB.
func TripleDESECBDecrypt(key, data []byte) ([]byte, error) {
	b, err := NewTripleDES(key)
	if err != nil {
		return nil, err
	}
	return ECBDecrypt(b, data)
}

// AESKCV returns the AES key check value used by GP (Amd D 7.2 / GPC 11.8):
// the first 3 bytes of AES-ECB(key, 16 x 01).
func AESKCV(key []byte) ([]byte, error) {
	return aesKCVWith(key, 0x01)
}

// AESKCVZero returns the variant some vendors use: the first 3 bytes of
// AES-ECB(key, 16 x 00).
func AESKCVZero(key []byte) ([]byte, error) {
	return aesKCVWith(key, 0x00)
}

func aesKCVWith(key []byte, fill byte) ([]byte, error) {
	b, err := NewAES(key)
	if err != nil {
		return nil, err
	}
	blk := make([]byte, 16)
	for i := range blk {
		blk[i] = fill
	}
	b.Encrypt(blk, blk)
	return blk[:3], nil
}

// DESKCV returns the DES / 3DES key check value: the first 3 bytes of
// 3DES-ECB(key, 8 x 00) for 16 or 24-byte keys, DES-ECB for 8-byte keys.
func DESKCV(key []byte) ([]byte, error) {
	var b cipher.Block
	var err error
	if len(key) == 8 {
		b, err = NewDES(key)
	} else {
		b, err = NewTripleDES(key)
	}
	if err != nil {
		return nil, err
	}
	blk := make([]byte, 8)
	b.Encrypt(blk, blk)
	return blk[:3], nil
}

// MACAlg1 computes the ISO/IEC 9797-1 MAC algorithm 1 with 3DES as block
// cipher (a full 3DES CBC-MAC), output 8 bytes. data must already be padded;
// icv nil means zero. SCP02 computes its card and host cryptograms this way
// (GPC E.4.2).
func MACAlg1(key, icv, data []byte) ([]byte, error) {
	b, err := NewTripleDES(key)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty MAC input", ErrDataLength)
	}
	ct, err := CBCEncrypt(b, icv, data)
	if err != nil {
		return nil, err
	}
	return ct[len(ct)-8:], nil
}

// MACAlg3 computes the ISO/IEC 9797-1 MAC algorithm 3 ("retail MAC"): single
// DES CBC under the first 8 bytes of the 16-byte key over every block but the
// last, then 3DES on the last block; output 8 bytes. data must already be
// padded; icv nil means zero. SCP02 uses it for C-MAC and R-MAC (GPC E.4.4)
// and DES DAP / tokens / receipts use it too (GPC Appendix B).
func MACAlg3(key, icv, data []byte) ([]byte, error) {
	if len(key) != 16 && len(key) != 24 {
		return nil, keyLenErr("retail MAC", len(key))
	}
	if len(data) == 0 || len(data)%8 != 0 {
		return nil, fmt.Errorf("%w: MAC input of %d bytes", ErrDataLength, len(data))
	}
	if icv == nil {
		icv = make([]byte, 8)
	}
	if len(icv) != 8 {
		return nil, fmt.Errorf("%w: ICV of %d bytes", ErrDataLength, len(icv))
	}
	d1, err := NewDES(key[:8])
	if err != nil {
		return nil, err
	}
	t, err := NewTripleDES(key)
	if err != nil {
		return nil, err
	}
	x := append([]byte(nil), icv...)
	n := len(data) / 8
	for i := 0; i < n-1; i++ {
		for j := 0; j < 8; j++ {
			x[j] ^= data[i*8+j]
		}
		d1.Encrypt(x, x)
	}
	for j := 0; j < 8; j++ {
		x[j] ^= data[(n-1)*8+j]
	}
	t.Encrypt(x, x)
	return x, nil
}
