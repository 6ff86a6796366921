package domain_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/gp/command"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"

	"github.com/tsmhub/tsmhub/services/conversation/domain"
)

// cardRouter plays the script router against the real card model: for each
// step it opens an SCP03 session (level 33) with the card's central SD, keys
// diversified from the issuer master key, wraps the step's plain commands,
// appends the PUT KEY of temporary keys when asked, and returns the plain
// R-APDUs as the router's ScriptCompleted would.
type cardRouter struct {
	t      *testing.T
	c      *card.Card
	cfg    card.Config
	master []byte
	// tempKey is the temporary key value given to new SP SDs (ENC = MAC = DEK).
	tempKey []byte
}

func newCardRouter(t *testing.T, cfg card.Config) *cardRouter {
	t.Helper()
	master := bytes.Repeat([]byte{0x4D}, 16)
	c, err := card.Manufacture(card.ManufactureSpec{CIN: mustHex(t, "0102030405060708090A"), IIN: mustHex(t, "420001"),
		Config: cfg, IssuerMasterKey: master})
	if err != nil {
		t.Fatal(err)
	}
	return &cardRouter{t: t, c: c, cfg: cfg, master: master, tempKey: bytes.Repeat([]byte{0x11}, 16)}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (r *cardRouter) transmit(b []byte) []byte {
	resp := r.c.Transmit(b)
	if len(resp) < 2 {
		r.t.Fatalf("short response %X to %X", resp, b)
	}
	return resp
}

func swOf(resp []byte) uint16 { return uint16(resp[len(resp)-2])<<8 | uint16(resp[len(resp)-1]) }

// run executes a step's script the way the script router does.
func (r *cardRouter) run(s *domain.Script) domain.StepResult {
	t := r.t
	t.Helper()
	central := card.CentralSD(r.cfg)
	if sw := swOf(r.transmit(command.Select(central).Bytes())); sw != apdu.SWOK {
		t.Fatalf("SELECT central SD: %04X", sw)
	}
	enc, mac, dek, err := card.DeriveSCP03Keys(r.master, card.SDKDD(r.c.KDD(), central))
	if err != nil {
		t.Fatal(err)
	}
	h, err := scp03.NewHost(scp03.StaticKeys{ENC: enc, MAC: mac, DEK: dek}, scp03.HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	iu, err := h.InitializeUpdate(card.KVNIssuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ProcessInitializeUpdateResponse(r.transmit(iu)); err != nil {
		t.Fatal(err)
	}
	ea, err := h.ExternalAuthenticate(0x33)
	if err != nil {
		t.Fatal(err)
	}
	if sw := swOf(r.transmit(ea)); sw != apdu.SWOK {
		t.Fatalf("EXTERNAL AUTHENTICATE: %04X", sw)
	}
	cmds := append([]string(nil), s.Commands...)
	if s.TemporaryKeys != nil {
		pk, _, err := command.PutKey(command.PutKeyParams{NewKVN: byte(s.TemporaryKeys.KeyVersion), FirstKeyID: 1,
			Keys: [][]byte{r.tempKey, r.tempKey, r.tempKey}, Encrypt: func(k []byte) ([]byte, error) { return scp03.EncryptKey(dek, k) }})
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, strings.ToUpper(hex.EncodeToString(pk.Bytes())))
	}
	resp := contract.SendScriptResponse{Responses: []string{}, Failed: []contract.ScriptFailure{}}
	for i, c := range cmds {
		w, err := h.Wrap(mustHex(t, c))
		if err != nil {
			t.Fatal(err)
		}
		data, sw, err := h.Unwrap(r.transmit(w))
		if err != nil {
			t.Fatalf("unwrap response to command %d: %v", i, err)
		}
		resp.Responses = append(resp.Responses, strings.ToUpper(hex.EncodeToString(append(data, byte(sw>>8), byte(sw)))))
		if !events.CommandSucceeded(sw) {
			resp.Failed = append(resp.Failed, contract.ScriptFailure{Index: i, Command: c, SW: hex4(sw), Reason: apdu.StatusText(sw)})
			if !s.ContinueOnError {
				break
			}
		}
	}
	switch {
	case len(resp.Failed) == 0:
		resp.Result = contract.Success()
	case s.ContinueOnError:
		resp.Result = contract.Result{Status: contract.StatusWithWarning,
			Error: contract.Errorf(contract.CodeSecureElementError, "some commands failed")}
	default:
		resp.Result = contract.Failure(contract.Errorf(contract.CodeSecureElementError, "execution stopped"))
	}
	res := domain.StepResult{Response: resp}
	if s.TemporaryKeys != nil && len(resp.Failed) == 0 {
		res.TemporaryKeys = &contract.TemporaryKeys{KeyVersion: s.TemporaryKeys.KeyVersion,
			Algorithm: contract.TemporaryKeyAlgorithm, Wrapped: strings.Repeat("AB", 56)}
	}
	return res
}

func hex4(sw uint16) string {
	return strings.ToUpper(hex.EncodeToString([]byte{byte(sw >> 8), byte(sw)}))
}

// entry returns the card's registry entry of aid.
func (r *cardRouter) entry(aid string) *card.RegistryEntry {
	for _, e := range r.c.Registry() {
		if strings.EqualFold(hex.EncodeToString(e.AID), aid) {
			e := e
			return &e
		}
	}
	return nil
}
