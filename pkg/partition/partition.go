// Package partition splits the state of a service that keeps per-SE state
// (conversation, script router) into a fixed number of partitions, each in its
// own bbolt file, and spreads the partitions over the replicas of the service
// that share one data directory.
//
// The rules (docs/operations.md, "Scaling"):
//
//   - A deployment has P partitions (PARTITIONS), fixed for its lifetime:
//     choose P at least as large as the most replicas you will run. Changing P
//     moves SEs between partitions and needs a drain (stop every replica, let
//     the SPs' conversations end, start with the new P on an empty data
//     directory).
//   - A key (an SE id, a conversation id) belongs to partition Of(key, P):
//     ids this package made with NewID carry their partition ("cv-p3-…");
//     any other key hashes to fnv32a(key) mod P.
//   - Partition k is owned by the process that holds the file lock of its
//     store (DATA_DIR/p<k>/<service>.db, bbolt's flock). The kernel drops a
//     flock when its process dies, even on SIGKILL, so a survivor takes the
//     partition over. Correctness never depends on the members agreeing:
//     the lock alone guarantees one owner per partition.
//   - Membership only balances the partitions: every process holds an
//     exclusive flock on DATA_DIR/members/<member id> while it lives; every
//     rebalance interval each member lists the live members (files whose lock
//     is held; a lockable file is stale and removed), takes its place i in the
//     sorted list of N members and aims at the partitions {k : k mod N == i}:
//     it releases the others gracefully and tries to open its own.
//
// With P = 1 nothing changes from an unpartitioned service: one store at
// DATA_DIR/<service>.db, the consumers' durable names unchanged, and a second
// replica on the same directory is a hot standby.
package partition

import (
	"fmt"
	"hash/fnv"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tsmhub/tsmhub/pkg/bus"
)

// Of returns the partition of key among n partitions. An id made by NewID for
// partition k < n is in partition k; any other key is in fnv32a(key) mod n.
func Of(key string, n int) int {
	if n <= 1 {
		return 0
	}
	if k, ok := Tagged(key); ok && k < n {
		return k
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// Tagged reads the partition an id made by NewID carries: <prefix>-p<k>-<rest>.
func Tagged(id string) (int, bool) {
	dash := strings.IndexByte(id, '-')
	if dash < 0 || len(id) < dash+4 || id[dash+1] != 'p' {
		return 0, false
	}
	rest := id[dash+2:]
	end := strings.IndexByte(rest, '-')
	if end <= 0 || end > 6 {
		return 0, false
	}
	k, err := strconv.Atoi(rest[:end])
	if err != nil || k < 0 || strconv.Itoa(k) != rest[:end] {
		return 0, false
	}
	return k, true
}

// NewID makes a unique id with prefix for partition k of n: "<prefix>-<nuid>"
// when n is 1 (the unpartitioned form), "<prefix>-p<k>-<nuid>" otherwise, so
// that Of finds the partition from the id alone.
func NewID(prefix string, k, n int) string {
	if n <= 1 {
		return prefix + "-" + bus.NewID()
	}
	return prefix + "-p" + strconv.Itoa(k) + "-" + bus.NewID()
}

// Dir is the directory of partition k's files: dataDir itself when n is 1
// (today's layout), dataDir/p<k> otherwise.
func Dir(dataDir string, k, n int) string {
	if n <= 1 {
		return dataDir
	}
	return filepath.Join(dataDir, "p"+strconv.Itoa(k))
}

// ConsumerName is the durable name of a consumer of partition k of n: name
// itself when n is 1, name-p<k> otherwise.
func ConsumerName(name string, k, n int) string {
	if n <= 1 {
		return name
	}
	return fmt.Sprintf("%s-p%d", name, k)
}
