package adapters

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/services/scriptrouter/app"
	"github.com/tsmhub/tsmhub/services/scriptrouter/domain"
)

// Key custody buckets. Both are systems of record: nothing else knows the
// temporary keys, and only the router saw the rotations it detected.
const (
	// BucketSDKeys: seId NUL sdAid -> domain.HeldKeys (JSON): the temporary
	// keys of an SP SD the router created, ENC || MAC || DEK sealed
	// (AES-256-GCM under SCRIPTROUTER_KEK, additional data binding SE and
	// SD). Deleted when the SP rotates the keys or after the time to live.
	BucketSDKeys = "sd-keys"
	// BucketCustody: seId NUL sdAid -> domain.Custody (JSON): who holds the
	// keys of the SD since when (central, sp, expired); never key values.
	BucketCustody = "custody"
)

func custodyKey(seID, sdAID string) []byte {
	return []byte(seID + "\x00" + strings.ToUpper(sdAID))
}

// custody implements app.Custody inside one bbolt transaction.
type custody struct{ tx *bolt.Tx }

func (c custody) get(bucket string, key []byte, v any) error {
	raw := c.tx.Bucket([]byte(bucket)).Get(key)
	if raw == nil {
		return app.ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", bucket, err)
	}
	return nil
}

func (c custody) Held(seID, sdAID string) (domain.HeldKeys, error) {
	var k domain.HeldKeys
	return k, c.get(BucketSDKeys, custodyKey(seID, sdAID), &k)
}

func (c custody) PutHeld(k domain.HeldKeys) error {
	return putJSON(c.tx.Bucket([]byte(BucketSDKeys)), string(custodyKey(k.SEID, k.SDAID)), k)
}

func (c custody) DeleteHeld(seID, sdAID string) error {
	return c.tx.Bucket([]byte(BucketSDKeys)).Delete(custodyKey(seID, sdAID))
}

func (c custody) Get(seID, sdAID string) (domain.Custody, error) {
	var rec domain.Custody
	return rec, c.get(BucketCustody, custodyKey(seID, sdAID), &rec)
}

func (c custody) Put(rec domain.Custody) error {
	return putJSON(c.tx.Bucket([]byte(BucketCustody)), string(custodyKey(rec.SEID, rec.SDAID)), rec)
}

// ListCustody implements app.Transactor.
func (s *Store) ListCustody(seID string) ([]domain.Custody, error) {
	out := []domain.Custody{}
	err := s.bus.DB().View(func(tx *bolt.Tx) error {
		prefix := []byte(seID + "\x00")
		c := tx.Bucket([]byte(BucketCustody)).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var rec domain.Custody
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("%s %q: %w", BucketCustody, k, err)
			}
			out = append(out, rec)
		}
		return nil
	})
	return out, err
}

// EraseExpiredKeys erases the temporary keys created before cutoff (the SP
// did not rotate them within the time to live) and records the custody
// "expired"; it returns how many it erased.
func (s *Store) EraseExpiredKeys(cutoff time.Time) (int, error) {
	n := 0
	err := s.bus.Update(func(tx *bus.Tx) error {
		n = 0
		keys := tx.Bucket([]byte(BucketSDKeys))
		var expired []domain.HeldKeys
		var corrupt [][]byte
		err := keys.ForEach(func(k, v []byte) error {
			var h domain.HeldKeys
			if err := json.Unmarshal(v, &h); err != nil {
				corrupt = append(corrupt, append([]byte(nil), k...))
				return nil
			}
			if h.CreatedAt.Before(cutoff) {
				expired = append(expired, h)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range corrupt {
			if err := keys.Delete(k); err != nil {
				return err
			}
		}
		now := time.Now().UTC()
		c := custody{tx: tx.Tx}
		for _, h := range expired {
			if err := c.DeleteHeld(h.SEID, h.SDAID); err != nil {
				return err
			}
			if err := c.Put(domain.Custody{SEID: h.SEID, SDAID: h.SDAID, SPID: h.SPID, State: domain.CustodyExpired,
				KeyVersion: h.KeyVersion, KeysCreatedAt: h.CreatedAt, Since: now}); err != nil {
				return err
			}
		}
		n = len(expired) + len(corrupt)
		return nil
	})
	return n, err
}

// KeySealer implements app.Sealer with AES-256-GCM: nonce || ciphertext,
// additional data "tsmhub/scriptrouter/sd-keys" NUL seId NUL sdAid, so a
// sealed value moved to another SE or SD does not open.
type KeySealer struct{ aead cipher.AEAD }

// NewKeySealer returns a sealer under kek (32 bytes).
func NewKeySealer(kek []byte) (*KeySealer, error) {
	if len(kek) != 32 {
		return nil, fmt.Errorf("the key-encryption key must be 32 bytes (AES-256), got %d", len(kek))
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &KeySealer{aead: aead}, nil
}

func sealAD(seID, sdAID string) []byte {
	return []byte("tsmhub/scriptrouter/sd-keys\x00" + seID + "\x00" + strings.ToUpper(sdAID))
}

// Seal implements app.Sealer.
func (s *KeySealer) Seal(plain []byte, seID, sdAID string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plain, sealAD(seID, sdAID)), nil
}

// ErrUnseal is returned for a sealed value that does not open.
var ErrUnseal = errors.New("sealed keys do not open under the configured KEK for this SE and SD")

// Open implements app.Sealer.
func (s *KeySealer) Open(sealed []byte, seID, sdAID string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrUnseal
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], sealAD(seID, sdAID))
	if err != nil {
		return nil, ErrUnseal
	}
	return plain, nil
}
