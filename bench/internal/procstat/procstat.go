// Package procstat reads what Linux says about processes and the machine
// under /proc: CPU time, resident and peak resident memory of a process, its
// children, its environment, the machine's CPU counters and load average.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of the CPU times in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports (the kernel fixes it for the
// user ABI), and reading sysconf(_SC_CLK_TCK) would need cgo.
const clockTick = 100

// Proc is one reading of a process.
type Proc struct {
	PID int
	// CPU is user plus system time since the process started; System is
	// the kernel part of it (syscalls: fsync, socket I/O).
	CPU    time.Duration
	System time.Duration
	// RSS is the resident set now; PeakRSS the high-water mark (VmHWM) since
	// the process started. Both in bytes.
	RSS     int64
	PeakRSS int64
	// Threads is the number of OS threads.
	Threads int
	// WriteSyscalls counts write-type system calls (write, pwrite, writev,
	// ...); DiskWriteBytes the bytes the process caused to be written to
	// storage (both from /proc/<pid>/io; zero if unreadable).
	WriteSyscalls  int64
	DiskWriteBytes int64
}

// Read reads /proc/<pid>/stat and /proc/<pid>/status.
func Read(pid int) (Proc, error) {
	p := Proc{PID: pid}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, err
	}
	f, err := statFields(stat)
	if err != nil {
		return p, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	// After the command: field 3 is state, so utime (14) and stime (15) are
	// f[11] and f[12].
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return p, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	p.CPU = time.Duration(utime+stime) * time.Second / clockTick
	p.System = time.Duration(stime) * time.Second / clockTick
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "VmRSS":
			p.RSS = kib(v)
		case "VmHWM":
			p.PeakRSS = kib(v)
		case "Threads":
			p.Threads, _ = strconv.Atoi(v)
		}
	}
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for _, line := range strings.Split(string(io), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch k {
			case "syscw":
				p.WriteSyscalls = n
			case "write_bytes":
				p.DiskWriteBytes = n
			}
		}
	}
	return p, nil
}

// statFields returns the fields of /proc/<pid>/stat after the command name,
// which is in parentheses and may itself contain spaces and parentheses.
func statFields(stat []byte) ([]string, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, fmt.Errorf("no command field")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("%d fields", len(f))
	}
	return f, nil
}

// kib parses "1234 kB" into bytes.
func kib(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	return n * 1024
}

// Children lists the processes whose parent is ppid.
func Children(ppid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		f, err := statFields(stat)
		if err != nil {
			continue
		}
		if parent, _ := strconv.Atoi(f[1]); parent == ppid {
			out = append(out, pid)
		}
	}
	return out, nil
}

// Environ returns the environment a process was started with (readable for
// processes of the same user).
func Environ(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			env[k] = v
		}
	}
	return env, nil
}

// CPUTimes is the machine's aggregate CPU counters from /proc/stat.
type CPUTimes struct {
	// Busy is every CPU's time not idle or waiting for I/O; Total includes
	// them; IOWait is time idle with I/O outstanding.
	Busy, IOWait, Total time.Duration
}

// MachineCPU reads the first line of /proc/stat.
func MachineCPU() (CPUTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return CPUTimes{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [10]int64
	for i := 1; i < len(f) && i <= 10; i++ {
		v[i-1], _ = strconv.ParseInt(f[i], 10, 64)
	}
	// user nice system idle iowait irq softirq steal guest guest_nice; guest
	// time is already counted in user.
	total := v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]
	idle := v[3] + v[4]
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTick }
	return CPUTimes{Busy: tick(total - idle), IOWait: tick(v[4]), Total: tick(total)}, nil
}

// LoadAvg returns the 1, 5 and 15 minute load averages.
func LoadAvg() ([3]float64, error) {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l, err
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return l, fmt.Errorf("/proc/loadavg: %q", b)
	}
	for i := range l {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l, nil
}
