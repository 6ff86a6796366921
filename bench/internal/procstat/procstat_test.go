package procstat

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestReadSelfBurnsCPU(t *testing.T) {
	before, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel has accounted at least two ticks more.
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for {
		for i := 0; i < 1e6; i++ {
			x += i
		}
		now, err := Read(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now.CPU-before.CPU >= 20*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time did not grow: %v -> %v", before.CPU, now.CPU)
		}
	}
	_ = x
	if before.RSS <= 0 || before.PeakRSS < before.RSS || before.Threads < 1 {
		t.Fatalf("memory fields: %+v", before)
	}
	f, err := os.CreateTemp(t.TempDir(), "w")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 0; i < 10; i++ {
		if _, err := f.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	after, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.WriteSyscalls-before.WriteSyscalls < 10 {
		t.Fatalf("write syscalls %d -> %d after 10 writes", before.WriteSyscalls, after.WriteSyscalls)
	}
}

func TestChildrenAndEnviron(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.Env = append(os.Environ(), "TSMBENCH_PROBE=yes")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	kids, err := Children(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(kids, cmd.Process.Pid) {
		t.Fatalf("children %v lack %d", kids, cmd.Process.Pid)
	}
	env, err := Environ(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if env["TSMBENCH_PROBE"] != "yes" {
		t.Fatalf("environ lacks TSMBENCH_PROBE: %d entries", len(env))
	}
}

func TestStatFieldsCommandWithParens(t *testing.T) {
	f, err := statFields([]byte("42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 1000 10"))
	if err != nil {
		t.Fatal(err)
	}
	if f[0] != "S" || f[1] != "1" || f[11] != "7" || f[12] != "3" {
		t.Fatalf("fields %v", f)
	}
}

func TestMachineCPUAndLoad(t *testing.T) {
	c, err := MachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	if c.Total <= 0 || c.Busy > c.Total {
		t.Fatalf("cpu %+v", c)
	}
	if _, err := LoadAvg(); err != nil {
		t.Fatal(err)
	}
}
