package adapters

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// sealVersion is the first byte of a sealed card state; it names the format
// (AES-GCM, 12-byte random nonce) so that a later format can coexist.
const sealVersion byte = 0x01

// StateSealer encrypts and authenticates card states at rest (DESIGN.md 6:
// keys at rest are encrypted under a key-encryption key from configuration).
// The SE id is bound in as additional data, so a state copied under another
// SE id does not open.
type StateSealer struct {
	aead cipher.AEAD
}

// NewStateSealer returns a sealer for an AES-128/192/256 key-encryption key.
func NewStateSealer(kek []byte) (*StateSealer, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, errors.New("state key-encryption key must be an AES-128/192/256 key")
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &StateSealer{aead: aead}, nil
}

func additionalData(seID string) []byte { return []byte("tsmhub/sesimulator/card/" + seID) }

// Seal returns version || nonce || AES-GCM(plain).
func (s *StateSealer) Seal(seID string, plain []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1 : 1+ns]); err != nil {
		return nil, fmt.Errorf("seal card state: %w", err)
	}
	return s.aead.Seal(out, out[1:1+ns], plain, additionalData(seID)), nil
}

// ErrUnsealable is returned for a stored state that does not open: wrong
// key-encryption key, another SE's state, or corruption.
var ErrUnsealable = errors.New("card state does not open with the configured SESIM_STATE_KEK (wrong key, or corrupt state)")

// Open reverses Seal.
func (s *StateSealer) Open(seID string, sealed []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrUnsealable
	}
	plain, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], additionalData(seID))
	if err != nil {
		return nil, ErrUnsealable
	}
	return plain, nil
}
