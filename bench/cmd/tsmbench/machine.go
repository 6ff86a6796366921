package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tsmhub/tsmhub/bench/internal/procstat"
	"github.com/tsmhub/tsmhub/bench/internal/stats"
)

// describeMachine gathers the machine description of BENCHMARKS.md; dataDir
// is where the stores live (its file system is the one that matters).
func describeMachine(dataDir string) Machine {
	m := Machine{NProc: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				m.MemoryGiB = math.Round(kb/1024/1024*10) / 10
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Disk = describeDisk(dataDir)
	m.FsyncP50Ms, m.FsyncP99Ms = fsyncLatency(dataDir, 200)
	m.BoltCommitUs, m.BoltCommitCPUUs = boltCommitCost(dataDir, 1000)
	m.LoadBefore, _ = procstat.LoadAvg()
	return m
}

// describeDisk names the device and file system type of the mount holding
// dir, with its size.
func describeDisk(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "unknown"
	}
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	best, dev, fstype := "", "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 3 {
			continue
		}
		mnt := fl[1]
		if (abs == mnt || strings.HasPrefix(abs, strings.TrimSuffix(mnt, "/")+"/")) && len(mnt) > len(best) {
			best, dev, fstype = mnt, fl[0], fl[2]
		}
	}
	var st syscall.Statfs_t
	size := ""
	if syscall.Statfs(abs, &st) == nil {
		size = fmt.Sprintf(", %.0f GiB", float64(st.Blocks)*float64(st.Bsize)/(1<<30))
	}
	return fmt.Sprintf("%s (%s on %s%s)", dev, fstype, best, size)
}

// fsyncLatency writes 4 KiB and fdatasyncs it n times in dir: the floor of
// one durable commit (bbolt fsyncs on every group commit).
func fsyncLatency(dir string, n int) (p50, p99 float64) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0, 0
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var samples []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i%64)*4096); err != nil {
			return 0, 0
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, 0
		}
		samples = append(samples, time.Since(start))
	}
	s := stats.Summarize(samples)
	return s.P50Ms, s.P99Ms
}

// boltCommitCost times n durable bbolt commits of one 800-byte put and one
// delete each (what a handler's transaction plus the outbox look like at the
// smallest) in dir; it returns the mean wall and CPU microseconds per commit.
// Every hop of a script pays at least one such commit in the service that
// handles it.
func boltCommitCost(dir string, n int) (wallUs, cpuUs float64) {
	path := filepath.Join(dir, "bolt-probe.db")
	defer os.Remove(path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return 0, 0
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("b")); return err }); err != nil {
		return 0, 0
	}
	val := make([]byte, 800)
	key := func(i int) []byte { return []byte(fmt.Sprintf("k%08d", i)) }
	cpu0, err := procstat.Read(os.Getpid())
	if err != nil {
		return 0, 0
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("b"))
			if err := b.Put(key(i), val); err != nil {
				return err
			}
			return b.Delete(key(i - 1))
		})
		if err != nil {
			return 0, 0
		}
	}
	wall := time.Since(start)
	cpu1, err := procstat.Read(os.Getpid())
	if err != nil {
		return 0, 0
	}
	return round(float64(wall.Microseconds())/float64(n), 1), round(float64((cpu1.CPU-cpu0.CPU).Microseconds())/float64(n), 1)
}

// loadSampler records the load average every interval, labelled with the
// phase running at the time.
type loadSampler struct {
	mu      sync.Mutex
	phase   string
	samples []LoadAvgSample
	stop    chan struct{}
	done    chan struct{}
}

func startLoadSampler(interval time.Duration) *loadSampler {
	s := &loadSampler{phase: "setup", stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *loadSampler) sample() {
	l, err := procstat.LoadAvg()
	if err != nil {
		return
	}
	s.mu.Lock()
	s.samples = append(s.samples, LoadAvgSample{At: time.Now().UTC(), Phase: s.phase, Load: l})
	s.mu.Unlock()
}

// setPhase labels the following samples and takes one at once.
func (s *loadSampler) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
	s.sample()
}

func (s *loadSampler) finish() []LoadAvgSample {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// waitForQuietMachine polls the 1-minute load average until it is below
// max, for at most maxWait; it returns the last reading and whether it got
// below. The machine is shared: measuring while others' jobs run would
// measure them too.
func waitForQuietMachine(max float64, maxWait time.Duration, logf func(string, ...any)) ([3]float64, bool) {
	deadline := time.Now().Add(maxWait)
	for {
		l, err := procstat.LoadAvg()
		if err != nil || l[0] < max {
			return l, err == nil
		}
		if time.Now().After(deadline) {
			logf("load average still %.2f after waiting %s: measuring anyway (noted in the results)", l[0], maxWait)
			return l, false
		}
		logf("load average %.2f %.2f %.2f: waiting for < %.2f", l[0], l[1], l[2], max)
		time.Sleep(20 * time.Second)
	}
}
