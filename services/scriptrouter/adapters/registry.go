package adapters

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/services/scriptrouter/domain"
)

// Projection buckets of the registry stream (TSM_REG). They are projections,
// not systems of record: deleting them and replaying TSM_REG through a new
// consumer rebuilds them.
const (
	// BucketRegSPs: spId -> spEntry (its security domain AID and its
	// key-transport key wrapped under the key-exchange key).
	BucketRegSPs = "registry.sps"
	// BucketRegServices: "<number>.<version>" -> serviceEntry (SP and instance AID).
	BucketRegServices = "registry.services"
	// BucketRegInstances: spId NUL "<number>.<version>" -> instance AID, the
	// index Scope reads (kept in step with BucketRegServices).
	BucketRegInstances = "registry.instances"
	// BucketRegSEs: seId -> seEntry (SP SDs pre-issued on the SE); SEs
	// without any are not stored.
	BucketRegSEs = "registry.ses"
	// BucketCardStates: conversationId -> domain.CardState (JSON), the
	// router's view of the card between the scripts of a conversation;
	// pruned with the script summaries.
	BucketCardStates = "conversations.cardstate"
)

type spEntry struct {
	Seq               uint64 `json:"seq"`
	SecurityDomainAID string `json:"securityDomainAid"`
	// KeyTransportKeyWrapped is the SP's key-transport key as the registry
	// sent it: wrapped under the key-exchange key, never in clear.
	KeyTransportKeyWrapped string `json:"keyTransportKeyWrapped,omitempty"`
}

type serviceEntry struct {
	Seq         uint64 `json:"seq"`
	SPID        string `json:"spId"`
	InstanceAID string `json:"instanceAid"`
}

type seEntry struct {
	Seq       uint64               `json:"seq"`
	PreIssued []events.PreIssuedSD `json:"preIssuedSpDomains"`
}

// registry implements app.Registry inside one bbolt transaction.
type registry struct{ tx *bolt.Tx }

// storedSeq returns the stream sequence of the stored entry of key (0 if none).
func storedSeq(b *bolt.Bucket, key string) (uint64, error) {
	raw := b.Get([]byte(key))
	if raw == nil {
		return 0, nil
	}
	var e struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	return e.Seq, nil
}

// newer reports whether a record with seq replaces the stored entry of key.
func newer(b *bolt.Bucket, key string, seq uint64) (bool, error) {
	old, err := storedSeq(b, key)
	return err == nil && (old == 0 || seq == 0 || seq > old), err
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), raw)
}

func (r registry) PutSP(seq uint64, rec events.SPRecord) error {
	b := r.tx.Bucket([]byte(BucketRegSPs))
	if ok, err := newer(b, rec.SPID, seq); err != nil || !ok {
		return err
	}
	return putJSON(b, rec.SPID, spEntry{Seq: seq, SecurityDomainAID: strings.ToUpper(rec.SecurityDomainAID),
		KeyTransportKeyWrapped: rec.KeyTransportKeyWrapped})
}

func (r registry) TransportKey(spID string) (string, bool, error) {
	raw := r.tx.Bucket([]byte(BucketRegSPs)).Get([]byte(spID))
	if raw == nil || spID == "" {
		return "", false, nil
	}
	var sp spEntry
	if err := json.Unmarshal(raw, &sp); err != nil {
		return "", false, fmt.Errorf("%s %s: %w", BucketRegSPs, spID, err)
	}
	return sp.KeyTransportKeyWrapped, true, nil
}

func instanceKey(spID, serviceKey string) []byte { return []byte(spID + "\x00" + serviceKey) }

func (r registry) PutService(seq uint64, rec events.ServiceRecord) error {
	b := r.tx.Bucket([]byte(BucketRegServices))
	idx := r.tx.Bucket([]byte(BucketRegInstances))
	key := rec.Number + "." + rec.Version
	if ok, err := newer(b, key, seq); err != nil || !ok {
		return err
	}
	if raw := b.Get([]byte(key)); raw != nil {
		var old serviceEntry
		if err := json.Unmarshal(raw, &old); err != nil {
			return fmt.Errorf("%s %s: %w", BucketRegServices, key, err)
		}
		// The entry may have moved to another SP: drop the old index key.
		if err := idx.Delete(instanceKey(old.SPID, key)); err != nil {
			return err
		}
	}
	aid := strings.ToUpper(rec.InstanceAID)
	if err := putJSON(b, key, serviceEntry{Seq: seq, SPID: rec.SPID, InstanceAID: aid}); err != nil {
		return err
	}
	if aid == "" {
		return nil
	}
	return idx.Put(instanceKey(rec.SPID, key), []byte(aid))
}

func (r registry) PutSE(seq uint64, rec events.SERecord) error {
	b := r.tx.Bucket([]byte(BucketRegSEs))
	if ok, err := newer(b, rec.SEID, seq); err != nil || !ok {
		return err
	}
	if len(rec.PreIssuedSPDomains) == 0 {
		// Most SEs have none: keep the bucket to the ones that do. A
		// later older record would then be taken, which only matters if
		// the registry took pre-issued SDs away, which it never does.
		return b.Delete([]byte(rec.SEID))
	}
	return putJSON(b, rec.SEID, seEntry{Seq: seq, PreIssued: rec.PreIssuedSPDomains})
}

func (r registry) Scope(spID, seID string) (domain.SPScope, bool, error) {
	scope := domain.SPScope{SPID: spID}
	raw := r.tx.Bucket([]byte(BucketRegSPs)).Get([]byte(spID))
	if raw == nil || spID == "" {
		return scope, false, nil
	}
	var sp spEntry
	if err := json.Unmarshal(raw, &sp); err != nil {
		return scope, false, fmt.Errorf("%s %s: %w", BucketRegSPs, spID, err)
	}
	if sp.SecurityDomainAID != "" {
		scope.SDAIDs = append(scope.SDAIDs, sp.SecurityDomainAID)
	}
	if raw := r.tx.Bucket([]byte(BucketRegSEs)).Get([]byte(seID)); raw != nil && seID != "" {
		var se seEntry
		if err := json.Unmarshal(raw, &se); err != nil {
			return scope, false, fmt.Errorf("%s %s: %w", BucketRegSEs, seID, err)
		}
		for _, sd := range se.PreIssued {
			if sd.SPID == spID && sd.AID != "" {
				scope.SDAIDs = append(scope.SDAIDs, strings.ToUpper(sd.AID))
			}
		}
	}
	prefix := []byte(spID + "\x00")
	c := r.tx.Bucket([]byte(BucketRegInstances)).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		scope.InstanceAIDs = append(scope.InstanceAIDs, string(v))
	}
	return scope, true, nil
}

// cardStates implements app.CardStates inside one bbolt transaction.
type cardStates struct{ tx *bolt.Tx }

func (c cardStates) Get(conversationID string) (domain.CardState, error) {
	raw := c.tx.Bucket([]byte(BucketCardStates)).Get([]byte(conversationID))
	if raw == nil || conversationID == "" {
		return domain.NewCardState(), nil
	}
	var s domain.CardState
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("%s %s: %w", BucketCardStates, conversationID, err)
	}
	if len(s.Channels) == 0 {
		return domain.NewCardState(), nil
	}
	return s, nil
}

func (c cardStates) Put(conversationID string, s domain.CardState) error {
	if conversationID == "" {
		return nil
	}
	return putJSON(c.tx.Bucket([]byte(BucketCardStates)), conversationID, s)
}
