package adapters

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
)

// KeyCipher encrypts SP key-transport keys at rest with AES-256-GCM under the
// registry's key-encryption key (KEK). The SP id is bound in as additional
// data, so a sealed key copied onto another SP's record does not open.
type KeyCipher struct {
	aead cipher.AEAD
}

// sealedVersion prefixes every sealed key, so the format can change later.
const sealedVersion = 1

// NewKeyCipher returns a cipher for a 32-byte KEK.
func NewKeyCipher(kek []byte) (*KeyCipher, error) {
	if len(kek) != 32 {
		return nil, fmt.Errorf("the key-encryption key must be 32 bytes (AES-256), got %d", len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &KeyCipher{aead: aead}, nil
}

func additionalData(spID string) []byte { return []byte("tsmhub/registry/sp-ktk/v1/" + spID) }

// Seal encrypts the key of spID: version || nonce || ciphertext+tag.
func (c *KeyCipher) Seal(spID string, key []byte) ([]byte, error) {
	nonce := make([]byte, c.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	out := append([]byte{sealedVersion}, nonce...)
	return c.aead.Seal(out, nonce, key, additionalData(spID)), nil
}

// ErrKeyUnreadable means a sealed key does not open under the current KEK.
var ErrKeyUnreadable = errors.New("the stored key-transport key cannot be decrypted with the configured key-encryption key")

// Open decrypts a sealed key of spID.
func (c *KeyCipher) Open(spID string, sealed []byte) ([]byte, error) {
	n := c.aead.NonceSize()
	if len(sealed) < 1+n+c.aead.Overhead() || sealed[0] != sealedVersion {
		return nil, ErrKeyUnreadable
	}
	key, err := c.aead.Open(nil, sealed[1:1+n], sealed[1+n:], additionalData(spID))
	if err != nil {
		return nil, ErrKeyUnreadable
	}
	return key, nil
}

// Equal reports whether a sealed key of spID opens to key (constant time in
// the key bytes).
func (c *KeyCipher) Equal(spID string, sealed, key []byte) bool {
	stored, err := c.Open(spID, sealed)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(stored, key) == 1
}
