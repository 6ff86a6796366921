package domain

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/gp/command"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
)

// The central TSM's own secure channel (docs/content-management.md,
// "Procedures and their card steps" and "Key custody").
//
// A script the router secures itself (a procedure step, or an SP script with
// securing central) runs in an SCP03 session on the basic channel, in two
// card round trips through the normal MNO path:
//
//	<scriptId>.open: SELECT <SD AID>, INITIALIZE UPDATE <KVN> <host challenge>
//	<scriptId>.run:  EXTERNAL AUTHENTICATE 33, then every command of the script
//	                 wrapped at level 33 (C-MAC, C-DEC, R-MAC, R-ENC), then for
//	                 a create-sd step the PUT KEY of the temporary keys
//
// The session keeps no session key at rest: the responses of the run phase
// are unwrapped by replaying the session (same static keys, host challenge
// and INITIALIZE UPDATE response, so the same MAC chain and counters: SCP03
// wrapping is deterministic). The static keys come from the issuer master key
// (the card's central SD: diversified over the KDD the card returned, never
// stored) or from the sealed copy of an SP SD's temporary keys in the session.

// Session phases: the round trip the router waits for.
const (
	PhaseOpen = "open"
	PhaseRun  = "run"
)

// Key sources of a session.
const (
	// KeysIssuer: the SD's keys are diversified from the issuer master key
	// over the KDD of the INITIALIZE UPDATE response (the central SD).
	KeysIssuer = "issuer"
	// KeysTemporary: the SD's temporary keys the router created and holds,
	// sealed in Session.SealedKeys.
	KeysTemporary = "temporary"
)

// SecurityLevel of the router's sessions: C-MAC, C-DEC, R-MAC and R-ENC.
const SecurityLevel byte = 0x33

// DefaultTemporaryKVN is the key version of temporary keys when the procedure
// names none.
const DefaultTemporaryKVN = 0x30

// Session is the router's secure channel of a script in flight.
type Session struct {
	// Phase is PhaseOpen or PhaseRun.
	Phase string `json:"phase"`
	// SDAID is the SD the session is opened with (uppercase hex).
	SDAID string `json:"sdAid"`
	// KeyVersion of the SD's key set (INITIALIZE UPDATE P1).
	KeyVersion int `json:"keyVersion"`
	// Keys is KeysIssuer or KeysTemporary.
	Keys string `json:"keys"`
	// SealedKeys are the SD's static keys, sealed (KeysTemporary only).
	SealedKeys []byte `json:"sealedKeys,omitempty"`
	// HostChallenge of INITIALIZE UPDATE (hex; public, it travels in clear).
	HostChallenge string `json:"hostChallenge"`
	// InitUpdate is the card's INITIALIZE UPDATE R-APDU (hex; public), set
	// when the run phase is built.
	InitUpdate string `json:"initUpdate,omitempty"`
	// NewKeys asks for temporary keys of a new SP SD (create-sd step).
	NewKeys *NewKeys `json:"newKeys,omitempty"`
}

// NewKeys are the temporary keys a create-sd step puts into a new SP SD.
type NewKeys struct {
	SPID       string `json:"spId"`
	SDAID      string `json:"sdAid"`
	KeyVersion int    `json:"keyVersion"`
	// Sealed holds ENC || MAC || DEK sealed, from the run phase on.
	Sealed []byte `json:"sealed,omitempty"`
}

// PhaseScriptID is the script id of one round trip of a session: distinct per
// phase, so that the MNO adapter and the card execute each exactly once.
func PhaseScriptID(scriptID, phase string) string { return scriptID + "." + phase }

// SplitPhaseScriptID reverses PhaseScriptID.
func SplitPhaseScriptID(id string) (scriptID, phase string, ok bool) {
	for _, p := range []string{PhaseOpen, PhaseRun} {
		if base, found := strings.CutSuffix(id, "."+p); found && base != "" {
			return base, p, true
		}
	}
	return "", "", false
}

// OpenCommands are the commands of the open phase: SELECT of the SD by AID
// and INITIALIZE UPDATE with the session's key version and host challenge.
func (s Session) OpenCommands() ([]string, error) {
	aid, err := hex.DecodeString(s.SDAID)
	if err != nil || len(aid) < 5 || len(aid) > 16 {
		return nil, fmt.Errorf("security domain AID %q is not 5 to 16 bytes of hex", s.SDAID)
	}
	hc, err := hex.DecodeString(s.HostChallenge)
	if err != nil || len(hc) != 8 {
		return nil, errors.New("host challenge is not 8 bytes of hex")
	}
	if s.KeyVersion < 0 || s.KeyVersion > 0x7F {
		return nil, fmt.Errorf("key version %d is out of range", s.KeyVersion)
	}
	iu := apdu.Command{CLA: 0x80, INS: scp03.INSInitializeUpdate, P1: byte(s.KeyVersion), P2: 0x00, Data: hc, Le: 0}
	return []string{upperHex(command.Select(aid).Bytes()), upperHex(iu.Bytes())}, nil
}

// SessionError is a failed step of the router's own session: the script ends
// Failed SECURE_ELEMENT_ERROR with a message naming the step and the SW (never
// key values).
func SessionError(sdAID, step string, sw uint16) *contract.Error {
	return contract.Errorf(contract.CodeSecureElementError,
		"the central TSM could not open its secure channel with security domain %s: %s returned SW %04X (%s); no command of the script ran",
		sdAID, step, sw, apdu.StatusText(sw))
}

// sessionFault is a session failure that is not a status word.
func sessionFault(sdAID, format string, args ...any) *contract.Error {
	return contract.Errorf(contract.CodeSecureElementError, "the central TSM's secure channel with security domain %s failed: %s",
		sdAID, fmt.Sprintf(format, args...))
}

// CheckOpen checks the responses of the open phase and returns the
// INITIALIZE UPDATE R-APDU (hex).
func (s Session) CheckOpen(responses []string) (string, *contract.Error) {
	steps := []string{"SELECT", fmt.Sprintf("INITIALIZE UPDATE (key version %02X)", s.KeyVersion)}
	for i, step := range steps {
		if i >= len(responses) {
			return "", sessionFault(s.SDAID, "the SE returned no response to %s", step)
		}
		r, err := parseResponse(responses[i])
		if err != nil {
			return "", sessionFault(s.SDAID, "the SE returned a malformed response to %s", step)
		}
		if r.SW != apdu.SWOK {
			return "", SessionError(s.SDAID, step, r.SW)
		}
	}
	return strings.ToUpper(responses[1]), nil
}

// IssuerKeys diversifies the SD's static keys from the issuer master key over
// the KDD of the INITIALIZE UPDATE R-APDU.
func IssuerKeys(master []byte, initUpdate string) (scp03.StaticKeys, error) {
	r, err := parseResponse(initUpdate)
	if err != nil {
		return scp03.StaticKeys{}, err
	}
	iu, err := scp03.ParseInitUpdateResponse(r.Data)
	if err != nil {
		return scp03.StaticKeys{}, err
	}
	enc, mac, dek, err := card.DeriveSCP03Keys(master, iu.KDD)
	if err != nil {
		return scp03.StaticKeys{}, err
	}
	return scp03.StaticKeys{ENC: enc, MAC: mac, DEK: dek}, nil
}

// Host replays the session up to EXTERNAL AUTHENTICATE with the static keys:
// it returns the authenticated host and the EXTERNAL AUTHENTICATE command.
// A card cryptogram that does not verify gives a SECURE_ELEMENT_ERROR naming
// the SD (wrong keys: another issuer master key, or keys the SP replaced).
func (s Session) Host(keys scp03.StaticKeys) (*scp03.Host, string, *contract.Error) {
	hc, err := hex.DecodeString(s.HostChallenge)
	iuResp, err2 := hex.DecodeString(s.InitUpdate)
	if err != nil || err2 != nil {
		return nil, "", sessionFault(s.SDAID, "the stored session is corrupt")
	}
	h, err := scp03.NewHost(keys, scp03.HostOptions{Channel: 0})
	if err != nil {
		return nil, "", sessionFault(s.SDAID, "its keys are unusable")
	}
	if _, err := h.InitializeUpdate(byte(s.KeyVersion), hc); err != nil {
		return nil, "", sessionFault(s.SDAID, "INITIALIZE UPDATE could not be built")
	}
	if err := h.ProcessInitializeUpdateResponse(iuResp); err != nil {
		if errors.Is(err, scp03.ErrCardCryptogram) {
			return nil, "", sessionFault(s.SDAID,
				"the card cryptogram of INITIALIZE UPDATE (key version %02X) does not verify: the card does not have the keys the central TSM holds for it",
				s.KeyVersion)
		}
		return nil, "", sessionFault(s.SDAID, "the INITIALIZE UPDATE response is not a valid SCP03 response")
	}
	ea, err := h.ExternalAuthenticate(SecurityLevel)
	if err != nil {
		return nil, "", sessionFault(s.SDAID, "the card does not support security level %02X", SecurityLevel)
	}
	return h, upperHex(ea), nil
}

// PutKeyCommand builds the plain PUT KEY that gives a new SP SD its temporary
// keys through the session (a new key set, key ids 1-3, each key encrypted
// under the session SD's static DEK) and the KCVs the card must confirm.
func PutKeyCommand(h *scp03.Host, kvn int, keys scp03.StaticKeys) (string, [][]byte, error) {
	c, kcvs, err := command.PutKey(command.PutKeyParams{NewKVN: byte(kvn), FirstKeyID: 1,
		Keys: [][]byte{keys.ENC, keys.MAC, keys.DEK}, Encrypt: h.EncryptKey})
	if err != nil {
		return "", nil, err
	}
	return upperHex(c.Bytes()), kcvs, nil
}

// WrapAll wraps plain commands in order (the host's counter and MAC chain
// advance with each).
func WrapAll(h *scp03.Host, plain []string) ([]string, error) {
	out := make([]string, 0, len(plain))
	for i, p := range plain {
		b, err := hex.DecodeString(p)
		if err != nil {
			return nil, fmt.Errorf("command %d is not hex", i)
		}
		w, err := h.Wrap(b)
		if err != nil {
			return nil, fmt.Errorf("command %d cannot be wrapped: %w", i, err)
		}
		out = append(out, upperHex(w))
	}
	return out, nil
}

// UnwrapAll replays the wrapping of plain on h (fresh from Host) and unwraps
// each response: the R-MAC is verified and the data decrypted. It returns the
// plain R-APDUs (data || SW, uppercase hex) of the responses given (fewer
// than the commands when the card stopped). A response that does not verify
// gives a SECURE_ELEMENT_ERROR naming its index.
func UnwrapAll(h *scp03.Host, sdAID string, plain, responses []string) ([]string, *contract.Error) {
	out := make([]string, 0, len(responses))
	for i, r := range responses {
		if i >= len(plain) {
			break
		}
		b, err := hex.DecodeString(plain[i])
		if err != nil {
			return nil, sessionFault(sdAID, "command %d is not hex", i)
		}
		if _, err := h.Wrap(b); err != nil {
			return nil, sessionFault(sdAID, "command %d cannot be wrapped", i)
		}
		rb, err := apdu.DecodeHex(r)
		if err != nil {
			return nil, sessionFault(sdAID, "the SE returned a malformed response to command %d", i)
		}
		data, sw, err := h.Unwrap(rb)
		if err != nil {
			return nil, sessionFault(sdAID, "the response to command %d does not verify (R-MAC or R-ENC); the outcome of the script is unknown", i)
		}
		out = append(out, upperHex(append(data, byte(sw>>8), byte(sw))))
	}
	return out, nil
}

// CheckExternalAuthenticate checks the first response of the run phase.
func (s Session) CheckExternalAuthenticate(responses []string) *contract.Error {
	step := fmt.Sprintf("EXTERNAL AUTHENTICATE (level %02X)", SecurityLevel)
	if len(responses) == 0 {
		return sessionFault(s.SDAID, "the SE returned no response to %s", step)
	}
	r, err := parseResponse(responses[0])
	if err != nil {
		return sessionFault(s.SDAID, "the SE returned a malformed response to %s", step)
	}
	if r.SW != apdu.SWOK {
		return SessionError(s.SDAID, step, r.SW)
	}
	return nil
}

// CheckPutKey checks the plain response of the temporary keys' PUT KEY: 9000
// and the KCVs of the keys sent.
func CheckPutKey(nk NewKeys, response string, kcvs [][]byte) *contract.Error {
	r, err := parseResponse(response)
	if err != nil {
		return contract.Errorf(contract.CodeSecureElementError,
			"PUT KEY of the temporary keys (key version %02X) of security domain %s: malformed response", nk.KeyVersion, nk.SDAID)
	}
	if r.SW != apdu.SWOK {
		return contract.Errorf(contract.CodeSecureElementError,
			"PUT KEY of the temporary keys (key version %02X) of security domain %s returned SW %04X (%s)",
			nk.KeyVersion, nk.SDAID, r.SW, apdu.StatusText(r.SW))
	}
	if command.VerifyPutKeyResponse(r.Data, byte(nk.KeyVersion), kcvs) != nil {
		return contract.Errorf(contract.CodeSecureElementError,
			"PUT KEY of the temporary keys (key version %02X) of security domain %s: the card did not confirm the keys sent (key check values differ)",
			nk.KeyVersion, nk.SDAID)
	}
	return nil
}

// SW returns the status word of an R-APDU in hex, and false when it has none.
func SW(response string) (uint16, bool) {
	r, err := parseResponse(response)
	return r.SW, err == nil
}

func parseResponse(s string) (apdu.Response, error) {
	b, err := apdu.DecodeHex(s)
	if err != nil {
		return apdu.Response{}, err
	}
	return apdu.ParseResponse(b)
}

func upperHex(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }
