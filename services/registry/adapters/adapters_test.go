package adapters_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/keycustody"

	"github.com/tsmhub/tsmhub/services/registry/adapters"
	"github.com/tsmhub/tsmhub/services/registry/app"
	"github.com/tsmhub/tsmhub/services/registry/domain"
)

func kek(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestKeyCipherRoundTripAndBinding(t *testing.T) {
	c, err := adapters.NewKeyCipher(kek(1))
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("0123456789abcdef")
	sealed, err := c.Seal("bank-a", key)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, key) {
		t.Fatal("sealed form contains the key")
	}
	got, err := c.Open("bank-a", sealed)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("open: %x %v", got, err)
	}
	if !c.Equal("bank-a", sealed, key) || c.Equal("bank-a", sealed, []byte("0123456789abcdeX")) {
		t.Fatal("Equal is wrong")
	}
	if _, err := c.Open("bank-b", sealed); err == nil {
		t.Fatal("a sealed key opened for another SP")
	}
	other, _ := adapters.NewKeyCipher(kek(2))
	if _, err := other.Open("bank-a", sealed); err == nil {
		t.Fatal("a sealed key opened under another KEK")
	}
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	if _, err := c.Open("bank-a", tampered); err == nil {
		t.Fatal("a tampered sealed key opened")
	}
	again, _ := c.Seal("bank-a", key)
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals of the same key are equal: the nonce is not fresh")
	}
	if _, err := adapters.NewKeyCipher(kek(1)[:16]); err == nil {
		t.Fatal("a 16-byte KEK was accepted")
	}
}

func openRepo(t *testing.T) (*adapters.Repository, *bus.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "registry.db")
	store, err := bus.OpenStore(bus.StoreConfig{Path: path, Buckets: adapters.Buckets()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	c, err := adapters.NewKeyCipher(kek(7))
	if err != nil {
		t.Fatal(err)
	}
	return adapters.NewRepository(store, c, keycustody.DemoKeyExchangeKey), store, path
}

func TestSPKeyIsSealedAtRestAndNeverPublished(t *testing.T) {
	repo, store, path := openRepo(t)
	key, _ := hex.DecodeString("8f3c21d4a5b6c7d8e9fa0b1c2d3e4f50")
	sp := domain.SP{ID: "bank-a", Name: "Bank A", SecurityDomainAID: domain.DefaultSecurityDomainAID("bank-a")}
	if err := repo.Update(func(tx app.Tx) error { return tx.SaveSP(sp, key) }); err != nil {
		t.Fatal(err)
	}
	got, err := repo.SPKeyTransportKey("bank-a")
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("key read back: %v", err)
	}
	var equal bool
	if err := repo.Update(func(tx app.Tx) error {
		var err error
		equal, err = tx.SPKeyTransportKeyEquals("bank-a", key)
		return err
	}); err != nil || !equal {
		t.Fatalf("SPKeyTransportKeyEquals = %v, %v", equal, err)
	}
	// The outbox holds the published record: no key in it.
	var outbox [][]byte
	_ = store.DB().View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("bus.outbox")).ForEach(func(_, v []byte) error {
			outbox = append(outbox, append([]byte(nil), v...))
			return nil
		})
	})
	if len(outbox) != 1 {
		t.Fatalf("%d outbox entries, want 1", len(outbox))
	}
	assertNoKey(t, "outbox entry", outbox[0], key)
	if !bytes.Contains(outbox[0], []byte("tsm.reg.sp.bank-a")) {
		t.Fatalf("outbox entry is not the SP record: %s", outbox[0])
	}
	store.Close()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	assertNoKey(t, "bbolt file", file, key)
}

// assertNoKey fails if data holds the key raw, in hex (either case) or in
// standard base64 (how encoding/json writes []byte).
func assertNoKey(t *testing.T, what string, data, key []byte) {
	t.Helper()
	for _, form := range [][]byte{key, []byte(hex.EncodeToString(key)), []byte(strings.ToUpper(hex.EncodeToString(key))),
		[]byte(base64.StdEncoding.EncodeToString(key))} {
		if bytes.Contains(data, form) {
			t.Fatalf("%s contains the key-transport key (%d-byte form)", what, len(form))
		}
	}
}

func TestMSIIndexFollowsTheSE(t *testing.T) {
	repo, _, _ := openRepo(t)
	se := domain.SE{ID: "0102030405060708", MSI: "4917000001", MSIType: domain.MSITypeMSISDN, MNO: "mno-a",
		Status: domain.StatusActive, ExpiresAt: time.Now().Add(time.Hour).UTC()}
	if err := repo.Update(func(tx app.Tx) error { return tx.SaveSE(se, nil) }); err != nil {
		t.Fatal(err)
	}
	moved := se
	moved.MSI, moved.MSIType = "4917000002", domain.MSITypeMDN
	if err := repo.Update(func(tx app.Tx) error { return tx.SaveSE(moved, &se) }); err != nil {
		t.Fatal(err)
	}
	_ = repo.View(func(tx app.ReadTx) error {
		if _, found, _ := tx.SEIDByMSI(domain.MSITypeMSISDN, "4917000001"); found {
			t.Error("the old MSI still resolves")
		}
		if id, found, _ := tx.SEIDByMSI(domain.MSITypeMDN, "4917000002"); !found || id != se.ID {
			t.Errorf("the new MSI resolves to %q, %v", id, found)
		}
		got, found, err := tx.SE(se.ID)
		if err != nil || !found || got.MSI != moved.MSI || !got.ExpiresAt.Equal(se.ExpiresAt) {
			t.Errorf("stored SE %+v %v %v", got, found, err)
		}
		return nil
	})
	if err := repo.View(func(tx app.ReadTx) error {
		return tx.(app.Tx).SaveSE(se, nil)
	}); err == nil {
		t.Fatal("a write in a read-only transaction succeeded")
	}
}
