// Package adapters stores the conversation service's state in its bbolt file
// and sends its messages through the bus outbox, both inside one *bus.Tx.
package adapters

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tsmhub/tsmhub/pkg/contract"

	"github.com/tsmhub/tsmhub/services/conversation/domain"
)

// Buckets of the conversation service. All are the system of record (they
// cannot be rebuilt from the streams: the events that opened a conversation
// or changed an instance may have aged out).
const (
	// BucketConversations holds every conversation by id (JSON domain.Conversation).
	BucketConversations = "conversations"
	// BucketOpenBySE maps an SE id to the conversation holding it (at most one).
	BucketOpenBySE = "conversations.open-by-se"
	// BucketWaiting holds begins and procedures waiting for a busy SE, keyed
	// <seId>/<sequence as 16 hex digits> so that a prefix scan yields one
	// SE's queue in arrival order; operator procedures are keyed
	// <seId>/!<sequence>, which sorts before every digit: they run first.
	BucketWaiting = "conversations.waiting"
	// BucketInstances holds service instances (JSON domain.Instance), keyed
	// <seId>/<spId>/<service number>/<service version>.
	BucketInstances = "content.instances"
	// BucketSDs holds SP security domains (JSON domain.SecurityDomain), keyed
	// <seId>/<SD AID in uppercase hex>.
	BucketSDs = "content.sds"
)

// Buckets lists the service's buckets, created at start-up. Procedures in
// progress live in BucketConversations (records of kind procedure).
var Buckets = []string{BucketConversations, BucketOpenBySE, BucketWaiting, BucketInstances, BucketSDs}

// Repository reads and writes conversation state in one bbolt transaction.
// Read-only transactions (HTTP, sweep scans) may use the reading methods only.
type Repository struct {
	tx *bolt.Tx
}

// NewRepository works inside tx.
func NewRepository(tx *bolt.Tx) *Repository { return &Repository{tx: tx} }

func (r *Repository) bucket(name string) (*bolt.Bucket, error) {
	b := r.tx.Bucket([]byte(name))
	if b == nil {
		return nil, fmt.Errorf("bucket %s is missing", name)
	}
	return b, nil
}

// Conversation returns the conversation with id, or nil if there is none.
func (r *Repository) Conversation(id string) (*domain.Conversation, error) {
	b, err := r.bucket(BucketConversations)
	if err != nil || id == "" {
		return nil, err
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	var c domain.Conversation
	if err := json.Unmarshal(v, &c); err != nil {
		return nil, fmt.Errorf("conversation %s: %w", id, err)
	}
	return &c, nil
}

// SaveConversation stores c.
func (r *Repository) SaveConversation(c *domain.Conversation) error {
	b, err := r.bucket(BucketConversations)
	if err != nil {
		return err
	}
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return b.Put([]byte(c.ID), v)
}

// OpenConversationOf returns the id of the conversation holding seID ("" if none).
func (r *Repository) OpenConversationOf(seID string) (string, error) {
	b, err := r.bucket(BucketOpenBySE)
	if err != nil {
		return "", err
	}
	return string(b.Get([]byte(seID))), nil
}

// SetOpenConversation records that conversationID holds seID.
func (r *Repository) SetOpenConversation(seID, conversationID string) error {
	b, err := r.bucket(BucketOpenBySE)
	if err != nil {
		return err
	}
	return b.Put([]byte(seID), []byte(conversationID))
}

// ClearOpenConversation frees seID.
func (r *Repository) ClearOpenConversation(seID string) error {
	b, err := r.bucket(BucketOpenBySE)
	if err != nil {
		return err
	}
	return b.Delete([]byte(seID))
}

func waitingPrefix(seID string) []byte { return []byte(seID + "/") }

// EnqueueBegin appends w to the queue of its SE.
func (r *Repository) EnqueueBegin(w domain.WaitingBegin) error {
	b, err := r.bucket(BucketWaiting)
	if err != nil {
		return err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	v, err := json.Marshal(w)
	if err != nil {
		return err
	}
	format := "%s/%016x"
	if w.Priority() {
		format = "%s/!%016x"
	}
	return b.Put([]byte(fmt.Sprintf(format, w.SEID(), seq)), v)
}

// WaitingBegins returns the begins waiting for seID, oldest first.
func (r *Repository) WaitingBegins(seID string) ([]domain.WaitingBegin, error) {
	b, err := r.bucket(BucketWaiting)
	if err != nil {
		return nil, err
	}
	var out []domain.WaitingBegin
	prefix := waitingPrefix(seID)
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		w, err := decodeWaiting(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

func decodeWaiting(k, v []byte) (domain.WaitingBegin, error) {
	var w domain.WaitingBegin
	if err := json.Unmarshal(v, &w); err != nil {
		return w, fmt.Errorf("waiting begin %s: %w", k, err)
	}
	w.Key = string(k)
	return w, nil
}

// RemoveWaitingBegin deletes a waiting begin by its key.
func (r *Repository) RemoveWaitingBegin(key string) error {
	b, err := r.bucket(BucketWaiting)
	if err != nil {
		return err
	}
	return b.Delete([]byte(key))
}

// CountWaiting returns how many begins wait for seID.
func (r *Repository) CountWaiting(seID string) (int, error) {
	b, err := r.bucket(BucketWaiting)
	if err != nil {
		return 0, err
	}
	n := 0
	prefix := waitingPrefix(seID)
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n, nil
}

// SEsToSweep lists the SEs with something that ran out by now: an open
// conversation past its expiry, or a waiting begin past its validity (or
// waiting for an SE that is free). Each is then swept in its own transaction.
func (r *Repository) SEsToSweep(now time.Time) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(seID string) {
		if !seen[seID] {
			seen[seID] = true
			out = append(out, seID)
		}
	}
	open, err := r.bucket(BucketOpenBySE)
	if err != nil {
		return nil, err
	}
	err = open.ForEach(func(k, v []byte) error {
		c, err := r.Conversation(string(v))
		if err != nil {
			return err
		}
		if c == nil || !c.Occupies(now) {
			add(string(k))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	waiting, err := r.bucket(BucketWaiting)
	if err != nil {
		return nil, err
	}
	err = waiting.ForEach(func(k, v []byte) error {
		w, err := decodeWaiting(k, v)
		if err != nil {
			return err
		}
		seID, _, _ := strings.Cut(string(k), "/")
		if w.ExpiredAt(now) || open.Get([]byte(seID)) == nil {
			add(seID)
		}
		return nil
	})
	return out, err
}

func instanceKey(seID, spID string, svc contract.ServiceID) []byte {
	return []byte(seID + "/" + spID + "/" + svc.Number + "/" + svc.Version)
}

func sdKey(seID, aid string) []byte { return []byte(seID + "/" + strings.ToUpper(aid)) }

// Content returns the instances and SP SDs recorded for seID.
func (r *Repository) Content(seID string) (domain.Content, error) {
	var c domain.Content
	prefix := []byte(seID + "/")
	b, err := r.bucket(BucketInstances)
	if err != nil {
		return c, err
	}
	cur := b.Cursor()
	for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
		var i domain.Instance
		if err := json.Unmarshal(v, &i); err != nil {
			return c, fmt.Errorf("instance %s: %w", k, err)
		}
		c.Instances = append(c.Instances, i)
	}
	if b, err = r.bucket(BucketSDs); err != nil {
		return c, err
	}
	cur = b.Cursor()
	for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
		var sd domain.SecurityDomain
		if err := json.Unmarshal(v, &sd); err != nil {
			return c, fmt.Errorf("security domain %s: %w", k, err)
		}
		c.SDs = append(c.SDs, sd)
	}
	return c, nil
}

// SaveInstance stores an instance.
func (r *Repository) SaveInstance(i domain.Instance) error {
	return r.put(BucketInstances, instanceKey(i.SEID, i.SPID, i.ServiceID), i)
}

// DeleteInstance removes an instance (terminated).
func (r *Repository) DeleteInstance(i domain.Instance) error {
	b, err := r.bucket(BucketInstances)
	if err != nil {
		return err
	}
	return b.Delete(instanceKey(i.SEID, i.SPID, i.ServiceID))
}

// SaveSD stores an SP security domain.
func (r *Repository) SaveSD(sd domain.SecurityDomain) error {
	return r.put(BucketSDs, sdKey(sd.SEID, sd.AID), sd)
}

// DeleteSD removes an SP security domain.
func (r *Repository) DeleteSD(seID, aid string) error {
	b, err := r.bucket(BucketSDs)
	if err != nil {
		return err
	}
	return b.Delete(sdKey(seID, aid))
}

func (r *Repository) put(bucket string, key []byte, v any) error {
	b, err := r.bucket(bucket)
	if err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}
