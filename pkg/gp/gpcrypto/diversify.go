package gpcrypto

import (
	"fmt"
)

// Key kinds used by the diversification templates (k in gp-card.md 3.2).
const (
	KeyENC byte = 0x01
	KeyMAC byte = 0x02
	KeyDEK byte = 0x03
)

// KDDLength is the length of the Key Diversification Data returned in the
// INITIALIZE UPDATE response.
const KDDLength = 10

func checkDiversify(kdd []byte, k byte) error {
	if len(kdd) != KDDLength {
		return fmt.Errorf("%w: KDD of %d bytes, want %d", ErrDataLength, len(kdd), KDDLength)
	}
	if k < KeyENC || k > KeyDEK {
		return fmt.Errorf("%w: key kind %d", ErrDataLength, k)
	}
	return nil
}

// KDF3 derives an SCP03 card key from a master key the way GlobalPlatformPro's
// "kdf3" template does (gp-card.md 3.2): for each 16-byte block i = 1, 2 of
// the key, AES-CMAC(master, i || 00 00 00 || k || 00 || KDD) and keep
// len(master) bytes. The output has the master key's length.
func KDF3(master, kdd []byte, k byte) ([]byte, error) {
	if err := checkDiversify(kdd, k); err != nil {
		return nil, err
	}
	b, err := NewAES(master)
	if err != nil {
		return nil, err
	}
	in := make([]byte, 0, 16)
	in = append(in, 0, 0, 0, 0, k, 0)
	in = append(in, kdd...)
	out := make([]byte, 0, 32)
	for i := byte(1); len(out) < len(master); i++ {
		in[0] = i
		out = append(out, CMACBlock(b, in)...)
	}
	return out[:len(master)], nil
}

func desDiversify(master []byte, half []byte, k byte) ([]byte, error) {
	b, err := NewTripleDES(master)
	if err != nil {
		return nil, err
	}
	in := make([]byte, 16)
	copy(in, half)
	in[6], in[7] = 0xF0, k
	copy(in[8:], half)
	in[14], in[15] = 0x0F, k
	return ECBEncrypt(b, in)
}

// EMV derives a 16-byte 3DES card key with the EMV CPS template:
// 3DES-ECB(master, KDD[4..9] F0 k || KDD[4..9] 0F k).
func EMV(master, kdd []byte, k byte) ([]byte, error) {
	if err := checkDiversify(kdd, k); err != nil {
		return nil, err
	}
	return desDiversify(master, kdd[4:10], k)
}

// VISA2 derives a 16-byte 3DES card key with the VISA2 template:
// 3DES-ECB(master, KDD[0..1] KDD[4..7] F0 k || KDD[0..1] KDD[4..7] 0F k).
func VISA2(master, kdd []byte, k byte) ([]byte, error) {
	if err := checkDiversify(kdd, k); err != nil {
		return nil, err
	}
	half := append(append([]byte(nil), kdd[0:2]...), kdd[4:8]...)
	return desDiversify(master, half, k)
}

// VISA derives a 16-byte 3DES card key with the older VISA template:
// 3DES-ECB(master, KDD[0..3] KDD[8..9] F0 k || KDD[0..3] KDD[8..9] 0F k).
func VISA(master, kdd []byte, k byte) ([]byte, error) {
	if err := checkDiversify(kdd, k); err != nil {
		return nil, err
	}
	half := append(append([]byte(nil), kdd[0:4]...), kdd[8:10]...)
	return desDiversify(master, half, k)
}
