package card

import (
	"bytes"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/command"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
)

// TestInteropTeamHost drives the card with the shared host side
// (pkg/gp/scp03 Host and pkg/gp/command builders), as the script-router and
// tsmctl will: pre-personalization of one SP on a UICC, then key rotation.
func TestInteropTeamHost(t *testing.T) {
	c := newCard(t, UICC)
	selectAID(t, c, 0, CentralSDAID, "9000")
	enc, mac, dek := issuerKeys(t, c, CentralSDAID)
	h := teamSession(t, c, scp03.StaticKeys{ENC: enc, MAC: mac, DEK: dek}, KVNIssuer, 0x33)
	send := func(cmd apdu.Command, err error) ([]byte, uint16) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		w, err := h.Wrap(cmd.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		d, s, err := h.Unwrap(c.Transmit(w))
		if err != nil {
			t.Fatalf("unwrap response to %X: %v", cmd.Bytes(), err)
		}
		return d, s
	}
	spSD, inst := hxs("A000000555AA01"), hxs("A000000555010101")
	tmp := bytes.Repeat([]byte{0x5C}, 16)
	steps := []struct {
		name string
		cmd  apdu.Command
		err  error
	}{}
	add := func(name string, cmd apdu.Command, err error) {
		steps = append(steps, struct {
			name string
			cmd  apdu.Command
			err  error
		}{name, cmd, err})
	}
	cmd, err := command.InstallInstall(command.InstallParams{ELF: SSDPackageAID, Module: SSDModuleAID, Instance: spSD, Privileges: []byte{0x80, 0, 0}}, true)
	add("install SP SD", cmd, err)
	cmd, err = command.InstallPersonalization(spSD)
	add("personalize SP SD", cmd, err)
	cmd, _, err = command.PutKey(command.PutKeyParams{NewKVN: 0x30, FirstKeyID: 1, Keys: [][]byte{tmp, tmp, tmp}, Encrypt: h.EncryptKey})
	add("temporary keys", cmd, err)
	cmd, err = command.InstallInstall(command.InstallParams{ELF: GenericELFAID, Module: GenericModuleAID, Instance: inst}, true)
	add("instantiate", cmd, err)
	cmd, err = command.InstallExtradition(command.ExtraditionParams{SD: spSD, AID: inst})
	add("extradite", cmd, err)
	for _, s := range steps {
		if _, sw := send(s.cmd, s.err); sw != apdu.SWOK {
			t.Fatalf("%s: SW %04X", s.name, sw)
		}
	}
	d, sw := send(command.GetStatus(0x40, false, nil))
	if sw != apdu.SWOK {
		t.Fatalf("GET STATUS: %04X", sw)
	}
	entries, err := command.ParseStatusResponse(d)
	if err != nil {
		t.Fatal(err)
	}
	ok := false
	for _, e := range entries {
		if bytes.Equal(e.AID, inst) && bytes.Equal(e.AssociatedSD, spSD) && e.LifeCycle == LCSelectable {
			ok = true
		}
	}
	if !ok {
		t.Fatalf("instance not reported in the SP SD: %+v", entries)
	}
	// The SP rotates its keys with the shared host.
	selectAID(t, c, 0, spSD, "9000")
	h = teamSession(t, c, scp03.StaticKeys{ENC: tmp, MAC: tmp, DEK: tmp}, 0x30, 0x03)
	nk := bytes.Repeat([]byte{0x77}, 16)
	pk, _, err := command.PutKey(command.PutKeyParams{ReplaceKVN: 0x30, NewKVN: 0x31, FirstKeyID: 1, Keys: [][]byte{nk, nk, nk}, Encrypt: h.EncryptKey})
	if _, sw := send(pk, err); sw != apdu.SWOK {
		t.Fatalf("key rotation: %04X", sw)
	}
	teamSession(t, c, scp03.StaticKeys{ENC: nk, MAC: nk, DEK: nk}, 0x31, 0x33)
}

func teamSession(t *testing.T, c *Card, keys scp03.StaticKeys, kvn, level byte) *scp03.Host {
	t.Helper()
	h, err := scp03.NewHost(keys, scp03.HostOptions{KVN: kvn})
	if err != nil {
		t.Fatal(err)
	}
	iu, err := h.InitializeUpdate(kvn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ProcessInitializeUpdateResponse(c.Transmit(iu)); err != nil {
		t.Fatalf("INITIALIZE UPDATE: %v", err)
	}
	ea, err := h.ExternalAuthenticate(level)
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Transmit(ea); up(r) != "9000" {
		t.Fatalf("EXTERNAL AUTHENTICATE: %X", r)
	}
	return h
}
