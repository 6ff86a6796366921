package app

import (
	"container/list"
	"hash/fnv"
	"sync"

	"github.com/tsmhub/tsmhub/pkg/gp/card"

	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
)

// loadedCard is a decoded card with the bookkeeping that goes with it, as
// last committed. It is only read or changed by the holder of its SE lock.
type loadedCard struct {
	card           *card.Card
	conversationID string
	counters       domain.Counters
}

// cardCache is a bounded LRU of decoded cards. The bbolt copy stays the
// authority: an entry is added after its state was committed and removed
// whenever the in-memory card may have moved away from the committed one
// (a failed commit, a duplicate event), so a miss costs only a decode.
type cardCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front = most recently used; values are *cacheItem
	items map[string]*list.Element
}

type cacheItem struct {
	seID string
	card *loadedCard
}

func newCardCache(max int) *cardCache {
	if max < 1 {
		max = 1
	}
	return &cardCache{max: max, order: list.New(), items: map[string]*list.Element{}}
}

func (c *cardCache) get(seID string) (*loadedCard, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[seID]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cacheItem).card, true
}

func (c *cardCache) add(seID string, lc *loadedCard) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[seID]; ok {
		el.Value.(*cacheItem).card = lc
		c.order.MoveToFront(el)
		return
	}
	c.items[seID] = c.order.PushFront(&cacheItem{seID: seID, card: lc})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*cacheItem).seID)
	}
}

func (c *cardCache) remove(seID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[seID]; ok {
		c.order.Remove(el)
		delete(c.items, seID)
	}
}

func (c *cardCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// seLocks serialises the work on one card: the bus router already sends one
// SE's execute events to one worker, but the registry consumer and the HTTP
// API touch cards too. Striping bounds memory whatever the fleet size; two
// SEs sharing a stripe only wait for each other.
type seLocks struct {
	stripes [1024]sync.Mutex
}

func (l *seLocks) lock(seID string) (unlock func()) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(seID))
	m := &l.stripes[h.Sum32()%uint32(len(l.stripes))]
	m.Lock()
	return m.Unlock
}
