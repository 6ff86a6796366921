package command

import (
	"bytes"
	"fmt"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// Key types (GPC Table 11-16).
const (
	KeyTypeDES byte = 0x80
	KeyTypeAES byte = 0x88
)

// KeyEncrypter encrypts a key value for PUT KEY: scp03.EncryptKey with the
// static DEK for AES keys, scp02.EncryptKey with the DEK session key for DES
// keys.
type KeyEncrypter func(key []byte) ([]byte, error)

// PutKeyParams describes a PUT KEY command (GPC 11.8, Amd D 7.2).
type PutKeyParams struct {
	// ReplaceKVN is the key version to replace (P1 b7-b1); 0 adds a new key
	// set.
	ReplaceKVN byte
	// NewKVN is the version number of the new keys (01-7F).
	NewKVN byte
	// FirstKeyID is the identifier of the first key (P2 b7-b1).
	FirstKeyID byte
	// Type is KeyTypeAES (default when zero) or KeyTypeDES.
	Type byte
	// Keys are the plain key values, in key id order.
	Keys [][]byte
	// Encrypt encrypts each key (see KeyEncrypter).
	Encrypt KeyEncrypter
	// More sets P1 b8 (more PUT KEY commands follow).
	More bool
}

// KeyComponent is one key data field of PUT KEY.
type KeyComponent struct {
	Type byte
	// KeyLength is the clear key length (AES: the length byte in front of
	// the encrypted value; DES: the encrypted length).
	KeyLength int
	// Encrypted is the encrypted key value (with padding for 24-byte AES
	// keys).
	Encrypted []byte
	// KCV is the key check value (may be empty).
	KCV []byte
}

// KCV returns the key check value GP uses for a key type: AESKCV for AES,
// DESKCV for DES.
func KCV(keyType byte, key []byte) ([]byte, error) {
	switch keyType {
	case KeyTypeAES:
		return gpcrypto.AESKCV(key)
	case KeyTypeDES:
		return gpcrypto.DESKCV(key)
	}
	return nil, fmt.Errorf("%w: key type %02X", ErrParam, keyType)
}

// PutKeyData returns the PUT KEY data field (new KVN, then one key data field
// per key) and the KCVs of the keys, in order.
func PutKeyData(p PutKeyParams) ([]byte, [][]byte, error) {
	if p.NewKVN == 0 || p.NewKVN > 0x7F || p.ReplaceKVN > 0x7F || p.FirstKeyID > 0x7F {
		return nil, nil, fmt.Errorf("%w: KVN or key id out of range", ErrParam)
	}
	if len(p.Keys) == 0 || p.Encrypt == nil {
		return nil, nil, fmt.Errorf("%w: PUT KEY needs keys and an encrypter", ErrParam)
	}
	typ := p.Type
	if typ == 0 {
		typ = KeyTypeAES
	}
	data := []byte{p.NewKVN}
	var kcvs [][]byte
	for i, k := range p.Keys {
		enc, err := p.Encrypt(k)
		if err != nil {
			return nil, nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		kcv, err := KCV(typ, k)
		if err != nil {
			return nil, nil, err
		}
		var val []byte
		switch typ {
		case KeyTypeAES:
			val = append([]byte{byte(len(k))}, enc...)
		case KeyTypeDES:
			val = enc
		}
		data = append(data, typ)
		data = tlv.AppendLV(data, val)
		data = tlv.AppendLV(data, kcv)
		kcvs = append(kcvs, kcv)
	}
	return data, kcvs, nil
}

// PutKey returns the PUT KEY command and the expected KCVs. P2 has b8 set
// when more than one key is sent.
func PutKey(p PutKeyParams) (apdu.Command, [][]byte, error) {
	data, kcvs, err := PutKeyData(p)
	if err != nil {
		return apdu.Command{}, nil, err
	}
	p1 := p.ReplaceKVN
	if p.More {
		p1 |= 0x80
	}
	p2 := p.FirstKeyID
	if len(p.Keys) > 1 {
		p2 |= 0x80
	}
	c, err := gp(INSPutKey, p1, p2, data, 0)
	return c, kcvs, err
}

// ParsePutKeyData splits a PUT KEY data field into the new KVN and its key
// components, as a card does before decrypting and checking them.
func ParsePutKeyData(data []byte) (byte, []KeyComponent, error) {
	if len(data) < 1 {
		return 0, nil, fmt.Errorf("%w: empty PUT KEY data", ErrParam)
	}
	kvn := data[0]
	rest := data[1:]
	var out []KeyComponent
	for len(rest) > 0 {
		typ := rest[0]
		val, r, err := tlv.ReadLV(rest[1:])
		if err != nil {
			return 0, nil, fmt.Errorf("%w: key %d: %v", ErrParam, len(out)+1, err)
		}
		kcv, r, err := tlv.ReadLV(r)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: key %d KCV: %v", ErrParam, len(out)+1, err)
		}
		kc := KeyComponent{Type: typ, KCV: kcv}
		if typ == KeyTypeAES {
			if len(val) < 1 {
				return 0, nil, fmt.Errorf("%w: key %d: empty AES key data", ErrParam, len(out)+1)
			}
			kc.KeyLength, kc.Encrypted = int(val[0]), val[1:]
			if kc.KeyLength > len(kc.Encrypted) {
				return 0, nil, fmt.Errorf("%w: key %d: length %d exceeds data", ErrParam, len(out)+1, kc.KeyLength)
			}
		} else {
			kc.KeyLength, kc.Encrypted = len(val), val
		}
		out = append(out, kc)
		rest = r
	}
	return kvn, out, nil
}

// PutKeyResponse builds the PUT KEY response data a card returns: the new
// KVN followed by the KCVs, without length bytes.
func PutKeyResponse(kvn byte, kcvs [][]byte) []byte {
	out := []byte{kvn}
	for _, k := range kcvs {
		out = append(out, k...)
	}
	return out
}

// ParsePutKeyResponse splits a PUT KEY response into the KVN and n KCVs of
// kcvLen bytes each (3 for GP keys).
func ParsePutKeyResponse(data []byte, n, kcvLen int) (byte, [][]byte, error) {
	if n < 0 || kcvLen < 0 || len(data) != 1+n*kcvLen {
		return 0, nil, fmt.Errorf("%w: PUT KEY response of %d bytes for %d KCVs of %d", ErrResponse, len(data), n, kcvLen)
	}
	var kcvs [][]byte
	for i := 0; i < n; i++ {
		kcvs = append(kcvs, data[1+i*kcvLen:1+(i+1)*kcvLen])
	}
	return data[0], kcvs, nil
}

// VerifyPutKeyResponse checks a PUT KEY response against the expected KVN and
// KCVs.
func VerifyPutKeyResponse(data []byte, kvn byte, kcvs [][]byte) error {
	if !bytes.Equal(data, PutKeyResponse(kvn, kcvs)) {
		return fmt.Errorf("%w: PUT KEY response does not confirm the keys sent", ErrResponse)
	}
	return nil
}
