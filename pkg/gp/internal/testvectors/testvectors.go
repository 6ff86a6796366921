// Package testvectors locates and loads the shared known-answer files
// (shared/testdata: RFC 4493, NIST CAVP SP 800-108, SCP02/SCP03 transcripts,
// GP worked examples) for the tests of the gp packages.
//
// The directory is found by walking up from the working directory until a
// "shared/testdata" directory appears: the repository and shared/ are
// siblings both on a developer machine (/work/main, /work/shared) and in CI
// (a fresh clone with a copy of shared/ beside it). The environment variable
// TSMHUB_TESTDATA overrides the search. A missing directory fails the test
// with t.Fatal: known-answer tests must never be skipped silently.
package testvectors

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// EnvVar names the environment variable that overrides the search.
const EnvVar = "TSMHUB_TESTDATA"

// Find returns the test data directory or an error saying where it looked.
func Find() (string, error) {
	if d := os.Getenv(EnvVar); d != "" {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return "", errors.New(EnvVar + "=" + d + " is not a directory")
		}
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		cand := filepath.Join(dir, "shared", "testdata")
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			return cand, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("no shared/testdata directory in " + wd + " or any parent; put a copy of shared/ beside the repository or set " + EnvVar)
}

// Dir returns the test data directory, failing the test when it is missing.
func Dir(t testing.TB) string {
	t.Helper()
	d, err := Find()
	if err != nil {
		t.Fatalf("known-answer test data not found: %v", err)
	}
	return d
}

// Read returns the content of a file in the test data directory.
func Read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(t), name))
	if err != nil {
		t.Fatalf("read test data: %v", err)
	}
	return b
}

// JSON decodes a JSON file of the test data directory into v.
func JSON(t testing.TB, name string, v any) {
	t.Helper()
	if err := json.Unmarshal(Read(t, name), v); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
}

// Hex decodes a hex string (case-insensitive, spaces ignored), failing the
// test on bad input.
func Hex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// Upper returns b as uppercase hex, the notation of the test data files.
func Upper(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }
