// Package adapters keeps the registry's state in the service's bbolt file,
// inside the bus.Store transactions that also carry the outbox, and publishes
// every saved record through that outbox.
package adapters

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"
	bolt "go.etcd.io/bbolt"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/keycustody"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/registry/app"
	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// Buckets of the registry in its bbolt file.
var (
	// BucketMNOs: mnoId -> events.MNORecord JSON. System of record.
	BucketMNOs = []byte("registry.mnos")
	// BucketSPs: spId -> storedSP JSON (record plus the sealed key-transport
	// key). System of record.
	BucketSPs = []byte("registry.sps")
	// BucketServices: "<number>/<version>" -> events.ServiceRecord JSON.
	// System of record.
	BucketServices = []byte("registry.services")
	// BucketSEs: seId (uppercase hex) -> events.SERecord JSON. System of record.
	BucketSEs = []byte("registry.ses")
	// BucketMSIIndex: "<msiType>:<msi>" -> seId. A projection of
	// registry.ses, maintained in the same transaction as every SE change;
	// it makes MSI look-ups and the uniqueness check one key read.
	BucketMSIIndex = []byte("registry.msi")
)

// The content bucket is declared in content.go.

// Buckets lists the registry's buckets for bus.StoreConfig.
func Buckets() []string {
	return []string{string(BucketMNOs), string(BucketSPs), string(BucketServices), string(BucketSEs), string(BucketMSIIndex),
		string(BucketContent)}
}

// Source is the ce-source of every event the registry emits.
const Source = topology.ServiceSourcePrefix + "registry"

// Repository implements app.Repository on a bus.Store.
type Repository struct {
	store  *bus.Store
	cipher *KeyCipher
	// exchangeKey wraps SP key-transport keys in published SP records.
	exchangeKey []byte
}

// NewRepository returns the registry repository on store; cipher seals SP
// key-transport keys at rest; exchangeKey (AES, 16, 24 or 32 bytes) wraps
// them in the published SP records, for the script router
// (keycustody.WrapTransportKey).
func NewRepository(store *bus.Store, cipher *KeyCipher, exchangeKey []byte) *Repository {
	return &Repository{store: store, cipher: cipher, exchangeKey: exchangeKey}
}

// Update implements app.Repository.
func (r *Repository) Update(fn func(app.Tx) error) error {
	return r.store.Update(func(btx *bus.Tx) error { return fn(r.InTx(btx)) })
}

// View implements app.Repository.
func (r *Repository) View(fn func(app.ReadTx) error) error {
	return r.store.DB().View(func(btx *bolt.Tx) error {
		return fn(&tx{btx: btx, cipher: r.cipher, exchangeKey: r.exchangeKey})
	})
}

// InTx gives the registry state inside a transaction opened by someone else
// (the SP request port), so that its answer commits with the state it read.
func (r *Repository) InTx(btx *bus.Tx) app.Tx {
	return &tx{btx: btx.Tx, out: btx, cipher: r.cipher, exchangeKey: r.exchangeKey}
}

// tx is a registry transaction: reads on btx, writes and emits through out
// (nil in a read-only transaction).
type tx struct {
	btx         *bolt.Tx
	out         *bus.Tx
	cipher      *KeyCipher
	exchangeKey []byte
}

func (t *tx) get(bucket []byte, key string, v any) (bool, error) {
	raw := t.btx.Bucket(bucket).Get([]byte(key))
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("%s/%s: %w", bucket, key, err)
	}
	return true, nil
}

// putAndPublish stores a record and emits it: the stored bytes are the event
// data, so the published record is exactly the stored one.
func (t *tx) putAndPublish(bucket []byte, key string, stored []byte, subject, ceType, ceSubject string, data []byte) error {
	if t.out == nil {
		return fmt.Errorf("write to %s in a read-only transaction", bucket)
	}
	if err := t.btx.Bucket(bucket).Put([]byte(key), stored); err != nil {
		return err
	}
	ev, err := recordEvent(ceType, ceSubject, data)
	if err != nil {
		return err
	}
	return t.out.Emit(subject, ev)
}

// recordEvent builds a registry record event from its JSON data.
func recordEvent(ceType, ceSubject string, data []byte) (event.Event, error) {
	ev, err := bus.NewEvent(bus.NewID(), Source, ceType, ceSubject, data)
	if err != nil {
		return ev, err
	}
	// The data is JSON already (SetData took it as opaque bytes).
	ev.DataBase64 = false
	return ev, nil
}

func (t *tx) MNO(id string) (domain.MNO, bool, error) {
	var r events.MNORecord
	found, err := t.get(BucketMNOs, id, &r)
	return mnoFromRecord(r), found, err
}

func (t *tx) SaveMNO(m domain.MNO) error {
	b, err := json.Marshal(MNORecord(m))
	if err != nil {
		return err
	}
	return t.putAndPublish(BucketMNOs, m.ID, b, topology.RegistryMNO(m.ID), events.TypeRegistryMNO, m.ID, b)
}

// storedSP is the stored form of an SP: its record plus the key-transport key
// sealed under the KEK (never published, never returned).
type storedSP struct {
	events.SPRecord
	SealedKeyTransportKey []byte `json:"sealedKeyTransportKey"`
}

func (t *tx) SP(id string) (domain.SP, bool, error) {
	var s storedSP
	found, err := t.get(BucketSPs, id, &s)
	return domain.SP{ID: s.SPID, Name: s.Name, SecurityDomainAID: s.SecurityDomainAID}, found, err
}

func (t *tx) SaveSP(sp domain.SP, keyTransportKey []byte) error {
	sealed, err := t.cipher.Seal(sp.ID, keyTransportKey)
	if err != nil {
		return err
	}
	rec := SPRecord(sp)
	if rec.KeyTransportKeyWrapped, err = keycustody.WrapTransportKey(t.exchangeKey, keyTransportKey); err != nil {
		return err
	}
	return t.saveSP(storedSP{SPRecord: rec, SealedKeyTransportKey: sealed})
}

// saveSP stores an SP and publishes its record (with the wrapped key, never
// the sealed one).
func (t *tx) saveSP(s storedSP) error {
	stored, err := json.Marshal(s)
	if err != nil {
		return err
	}
	data, err := json.Marshal(s.SPRecord)
	if err != nil {
		return err
	}
	return t.putAndPublish(BucketSPs, s.SPID, stored, topology.RegistrySP(s.SPID), events.TypeRegistrySP, s.SPID, data)
}

// RepublishSPRecords publishes again the record of every SP whose stored
// record lacks the key-transport key wrapped under the current key-exchange
// key (SPs enrolled before the registry published wrapped keys, or after a
// change of REGISTRY_KEY_EXCHANGE_KEY), so the script router gets keys it
// can unwrap without the SPs being PUT again. SPs whose sealed key does not
// open under the current KEK are listed in unreadable and left as they are.
func (r *Repository) RepublishSPRecords() (republished int, unreadable []string, err error) {
	err = r.store.Update(func(btx *bus.Tx) error {
		republished, unreadable = 0, nil
		t := &tx{btx: btx.Tx, out: btx, cipher: r.cipher, exchangeKey: r.exchangeKey}
		var stale []storedSP
		err := btx.Tx.Bucket(BucketSPs).ForEach(func(k, v []byte) error {
			var s storedSP
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("%s/%s: %w", BucketSPs, k, err)
			}
			key, err := r.cipher.Open(s.SPID, s.SealedKeyTransportKey)
			if err != nil {
				unreadable = append(unreadable, s.SPID)
				return nil
			}
			defer clear(key)
			if s.KeyTransportKeyWrapped != "" {
				if k, err := keycustody.UnwrapTransportKey(r.exchangeKey, s.KeyTransportKeyWrapped); err == nil {
					same := subtle.ConstantTimeCompare(k, key) == 1
					clear(k)
					if same {
						return nil
					}
				}
			}
			if s.KeyTransportKeyWrapped, err = keycustody.WrapTransportKey(r.exchangeKey, key); err != nil {
				return err
			}
			stale = append(stale, s)
			return nil
		})
		if err != nil {
			return err
		}
		for _, s := range stale {
			if err := t.saveSP(s); err != nil {
				return err
			}
		}
		republished = len(stale)
		return nil
	})
	return republished, unreadable, err
}

func (t *tx) SPKeyTransportKeyEquals(spID string, key []byte) (bool, error) {
	var s storedSP
	found, err := t.get(BucketSPs, spID, &s)
	if err != nil || !found {
		return false, err
	}
	return t.cipher.Equal(spID, s.SealedKeyTransportKey, key), nil
}

// SPKeyTransportKey returns an SP's key-transport key in clear, for the use
// cases that wrap keys for the SP (pre-personalization). Callers must not
// keep, log or publish it.
func (r *Repository) SPKeyTransportKey(spID string) ([]byte, error) {
	var key []byte
	err := r.store.DB().View(func(btx *bolt.Tx) error {
		var s storedSP
		found, err := (&tx{btx: btx}).get(BucketSPs, spID, &s)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("no SP %q is enrolled", spID)
		}
		key, err = r.cipher.Open(spID, s.SealedKeyTransportKey)
		return err
	})
	return key, err
}

func (t *tx) Service(number, version string) (domain.Service, bool, error) {
	var r events.ServiceRecord
	found, err := t.get(BucketServices, domain.ServiceKey(number, version), &r)
	return serviceFromRecord(r), found, err
}

func (t *tx) SaveService(s domain.Service) error {
	b, err := json.Marshal(ServiceRecord(s))
	if err != nil {
		return err
	}
	return t.putAndPublish(BucketServices, s.Key(), b, topology.RegistryService(s.Number, s.Version),
		events.TypeRegistryService, s.Key(), b)
}

func (t *tx) SE(id string) (domain.SE, bool, error) {
	var r events.SERecord
	found, err := t.get(BucketSEs, id, &r)
	return seFromRecord(r), found, err
}

func msiKey(msiType, msi string) []byte { return []byte(msiType + ":" + msi) }

func (t *tx) SEIDByMSI(msiType, msi string) (string, bool, error) {
	v := t.btx.Bucket(BucketMSIIndex).Get(msiKey(msiType, msi))
	if v == nil {
		return "", false, nil
	}
	return string(v), true, nil
}

func (t *tx) SaveSE(se domain.SE, previous *domain.SE) error {
	if t.out == nil {
		return fmt.Errorf("write SE %s in a read-only transaction", se.ID)
	}
	idx := t.btx.Bucket(BucketMSIIndex)
	if previous != nil && (previous.MSIType != se.MSIType || previous.MSI != se.MSI) {
		// Remove the old entry only if it still points at this SE.
		old := msiKey(previous.MSIType, previous.MSI)
		if string(idx.Get(old)) == se.ID {
			if err := idx.Delete(old); err != nil {
				return err
			}
		}
	}
	if err := idx.Put(msiKey(se.MSIType, se.MSI), []byte(se.ID)); err != nil {
		return err
	}
	b, err := json.Marshal(SERecord(se))
	if err != nil {
		return err
	}
	return t.putAndPublish(BucketSEs, se.ID, b, topology.RegistrySE(se.ID), events.TypeRegistrySE, se.ID, b)
}
