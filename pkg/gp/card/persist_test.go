package card

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/scp02"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
)

// restored marshals c and returns the card Restore makes of it.
func restored(t *testing.T, c *Card) *Card {
	t.Helper()
	blob, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Restore(blob)
	if err != nil {
		t.Fatal(err)
	}
	return c2
}

// TestPersistenceMidSessionSCP02 continues an SCP02 session (level 03: C-MAC
// chain with ICV encryption, C-DECRYPTION) on a restored card, and keeps the
// key set's sequence counter.
func TestPersistenceMidSessionSCP02(t *testing.T) {
	c := newCard(t, Embedded)
	k := bytes.Repeat([]byte{0x40, 0x41}, 8)
	c.st.isd().KeySets = nil
	if err := c.PutKeySet(ISDAID, SCP02Keys(0x20, k, k, k)); err != nil {
		t.Fatal(err)
	}
	h, err := scp02.NewHost(scp02.StaticKeys{ENC: k, MAC: k, DEK: k}, scp02.HostOptions{I: 0x55, AID: ISDAID, KVN: 0x20})
	if err != nil {
		t.Fatal(err)
	}
	iu, _ := h.InitializeUpdate(0x20, nil)
	if err := h.ProcessInitializeUpdateResponse(c.Transmit(iu)); err != nil {
		t.Fatal(err)
	}
	ea, _ := h.ExternalAuthenticate(0x03)
	if r := c.Transmit(ea); up(r) != "9000" {
		t.Fatalf("EXTERNAL AUTHENTICATE: %X", r)
	}
	send := func(c *Card, plain string) ([]byte, uint16) {
		t.Helper()
		w, err := h.Wrap(hx(t, plain))
		if err != nil {
			t.Fatal(err)
		}
		d, sw, err := h.Unwrap(c.Transmit(w))
		if err != nil {
			t.Fatal(err)
		}
		return d, sw
	}
	if _, sw := send(c, "80F28002024F0000"); sw != apdu.SWOK {
		t.Fatalf("GET STATUS: %04X", sw)
	}
	c2 := restored(t, c)
	if d, sw := send(c2, "80F28002024F0000"); sw != apdu.SWOK || !bytes.Contains(d, ISDAID) {
		t.Fatalf("GET STATUS after restore: %X %04X", d, sw)
	}
	if d, sw := send(c2, "80CA00C100"); sw != apdu.SWOK || up(d) != "C1020001" {
		t.Fatalf("sequence counter after restore: %X %04X", d, sw)
	}
}

// TestPersistenceHalfOpenSession restores a card between INITIALIZE UPDATE
// and EXTERNAL AUTHENTICATE; the restored card completes the handshake.
func TestPersistenceHalfOpenSession(t *testing.T) {
	c := newCard(t, UICC)
	selectAID(t, c, 0, CentralSDAID, "9000")
	enc, mac, dek := issuerKeys(t, c, CentralSDAID)
	h, err := scp03.NewHost(scp03.StaticKeys{ENC: enc, MAC: mac, DEK: dek}, scp03.HostOptions{KVN: KVNIssuer, SDAID: CentralSDAID})
	if err != nil {
		t.Fatal(err)
	}
	iu, _ := h.InitializeUpdate(KVNIssuer, nil)
	if err := h.ProcessInitializeUpdateResponse(c.Transmit(iu)); err != nil {
		t.Fatal(err)
	}
	c2 := restored(t, c)
	ea, _ := h.ExternalAuthenticate(0x33)
	if r := c2.Transmit(ea); up(r) != "9000" {
		t.Fatalf("EXTERNAL AUTHENTICATE on the restored card: %X", r)
	}
	w, _ := h.Wrap(hx(t, "80CA00D300"))
	d, sw, err := h.Unwrap(c2.Transmit(w))
	if err != nil || sw != apdu.SWOK || up(d) != "D30133" {
		t.Fatalf("GET DATA D3: %X %04X %v", d, sw, err)
	}
}

// TestRestoreRejectsBadSessions: a state of another version is refused, and
// a session without a protocol is dropped (the channel has no secure
// channel, as after a reset) instead of failing later.
func TestRestoreRejectsBadSessions(t *testing.T) {
	c := newCard(t, UICC)
	openIssuerSD(t, c, 0, CentralSDAID)
	blob, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(blob, &st); err != nil {
		t.Fatal(err)
	}
	st["v"] = 1
	old, _ := json.Marshal(st)
	if _, err := Restore(old); err == nil {
		t.Fatalf("state version 1 accepted")
	}
	st["v"] = stateVersion
	ch0 := st["channels"].([]any)[0].(map[string]any)
	delete(ch0["session"].(map[string]any), "scp03")
	bad, _ := json.Marshal(st)
	c2, err := Restore(bad)
	if err != nil {
		t.Fatal(err)
	}
	if c2.st.Channels[0].Session != nil {
		t.Fatalf("session without protocol kept")
	}
	mustTransmit(t, c2, "80CA004200", "9000")
	mustTransmit(t, c2, "84CA004208"+"0000000000000000"+"00", "6982")
}
