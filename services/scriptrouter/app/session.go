package app

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
	"github.com/tsmhub/tsmhub/pkg/keycustody"
	"github.com/tsmhub/tsmhub/services/scriptrouter/domain"
)

// The router's own secure channel (domain/session.go) and key custody
// (docs/content-management.md, "Key custody").

// TemporaryKeyAlgorithm is the algorithm of the temporary keys handed out.
const TemporaryKeyAlgorithm = "AES-128"

// checkProcedure checks the fields of a procedure step the router relies on.
func checkProcedure(p *events.ProcedureScript) *domain.Rejection {
	bad := func(format string, args ...any) *domain.Rejection {
		return domain.Reject(contract.CodeInternalError,
			"the central TSM built a malformed procedure step (%s): contact its operator", fmt.Sprintf(format, args...))
	}
	if !validAID(p.SecurityDomainAID) {
		return bad("securityDomainAid %q is not an AID of 5 to 16 bytes in hex", truncate(p.SecurityDomainAID))
	}
	if tk := p.TemporaryKeys; tk != nil {
		if !validAID(tk.SecurityDomainAID) {
			return bad("temporaryKeys.securityDomainAid %q is not an AID of 5 to 16 bytes in hex", truncate(tk.SecurityDomainAID))
		}
		if tk.KeyVersion < 0 || tk.KeyVersion > 0x7F {
			return bad("temporaryKeys.keyVersion %d is not 1 to 127", tk.KeyVersion)
		}
		if tk.SPID == "" {
			return bad("temporaryKeys.spId is empty")
		}
	}
	return nil
}

func validAID(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) >= 5 && len(b) <= 16
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// hostChallenge draws the 8-byte host challenge of INITIALIZE UPDATE.
func (a *App) hostChallenge() (string, error) {
	b := make([]byte, 8)
	if _, err := io.ReadFull(a.cfg.Rand, b); err != nil {
		return "", fmt.Errorf("host challenge: %w", err)
	}
	return strings.ToUpper(hex.EncodeToString(b)), nil
}

// procedureSession is the session of a procedure step: the central SD of the
// step, its issuer key set (KVN 30, keys diversified from the issuer master
// key), and the temporary keys to create if the step asks for them. A step
// that asks for temporary keys of an SP without a key-transport key is
// refused before anything reaches the card.
func (a *App) procedureSession(tx Tx, req events.ScriptRequested) (*domain.Session, *domain.Rejection, error) {
	p := req.Procedure
	hc, err := a.hostChallenge()
	if err != nil {
		return nil, nil, err
	}
	s := &domain.Session{Phase: domain.PhaseOpen, SDAID: strings.ToUpper(p.SecurityDomainAID), KeyVersion: int(card.KVNIssuer),
		Keys: domain.KeysIssuer, HostChallenge: hc}
	if tk := p.TemporaryKeys; tk != nil {
		if _, rej, err := a.transportKey(tx, tk.SPID); err != nil || rej != nil {
			return nil, rej, err
		}
		kvn := tk.KeyVersion
		if kvn == 0 {
			kvn = domain.DefaultTemporaryKVN
		}
		s.NewKeys = &domain.NewKeys{SPID: tk.SPID, SDAID: strings.ToUpper(tk.SecurityDomainAID), KeyVersion: kvn}
	}
	return s, nil, nil
}

// centralSession is the session of an SP script with securing central: the
// SP SD whose temporary keys the router holds (the sealed copy goes into the
// session), or the refusal that says why there is none.
func (a *App) centralSession(tx Tx, req events.ScriptRequested, scope domain.SPScope) (*domain.Session, *domain.Rejection, error) {
	var lookupErr error
	held := map[string]domain.HeldKeys{}
	sd, ok := domain.PickCentralSD(scope, req.TargetAID, func(aid string) bool {
		k, err := tx.Custody().Held(req.SEID, aid)
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				lookupErr = err
			}
			return false
		}
		held[aid] = k
		return true
	})
	if lookupErr != nil {
		return nil, nil, lookupErr
	}
	if !ok {
		refused := domain.RefusedSD(scope, req.TargetAID)
		var c *domain.Custody
		if refused != "" {
			rec, err := tx.Custody().Get(req.SEID, refused)
			switch {
			case err == nil:
				c = &rec
			case !errors.Is(err, ErrNotFound):
				return nil, nil, err
			}
		}
		return nil, domain.CentralRefusal(req.Request.SPID, req.SEID, refused, c, a.cfg.TemporaryKeyTTL), nil
	}
	hc, err := a.hostChallenge()
	if err != nil {
		return nil, nil, err
	}
	k := held[sd]
	return &domain.Session{Phase: domain.PhaseOpen, SDAID: sd, KeyVersion: k.KeyVersion, Keys: domain.KeysTemporary,
		SealedKeys: k.Sealed, HostChallenge: hc}, nil, nil
}

// transportKey returns the SP's key-transport key, unwrapped from the
// registry projection under the key-exchange key, or a refusal.
func (a *App) transportKey(tx Tx, spID string) ([]byte, *domain.Rejection, error) {
	wrapped, _, err := tx.Registry().TransportKey(spID)
	if err != nil {
		return nil, nil, err
	}
	if wrapped == "" {
		return nil, domain.Reject(contract.CodeNotAllowed,
			"SP %s has no key-transport key registered with the central TSM, so it could not receive the temporary keys of its security domain: register one (keyTransportKey of PUT /v1/sps/%s) and retry",
			spID, spID), nil
	}
	ktk, err := keycustody.UnwrapTransportKey(a.cfg.KeyExchangeKey, wrapped)
	if err != nil {
		return nil, domain.Reject(contract.CodeInternalError,
			"the key-transport key of SP %s does not unwrap under the script router's key-exchange key: the operator must configure SCRIPTROUTER_KEY_EXCHANGE_KEY as the registry's REGISTRY_KEY_EXCHANGE_KEY",
			spID), nil
	}
	return ktk, nil, nil
}

// sessionKeys returns the static keys of a session's SD.
func (a *App) sessionKeys(s *domain.Session, seID string) (scp03.StaticKeys, *contract.Error) {
	switch s.Keys {
	case domain.KeysIssuer:
		k, err := domain.IssuerKeys(a.cfg.IssuerMasterKey, s.InitUpdate)
		if err != nil {
			return scp03.StaticKeys{}, contract.Errorf(contract.CodeSecureElementError,
				"the central TSM's secure channel with security domain %s failed: the INITIALIZE UPDATE response is not a valid SCP03 response", s.SDAID)
		}
		return k, nil
	case domain.KeysTemporary:
		k, err := a.openKeys(s.SealedKeys, seID, s.SDAID)
		if err != nil {
			return scp03.StaticKeys{}, contract.Errorf(contract.CodeInternalError,
				"the central TSM cannot open its sealed keys of security domain %s (was SCRIPTROUTER_KEK changed?): contact its operator", s.SDAID)
		}
		return k, nil
	}
	return scp03.StaticKeys{}, contract.Errorf(contract.CodeInternalError, "unknown key source %q of the session", s.Keys)
}

// openKeys unseals ENC || MAC || DEK.
func (a *App) openKeys(sealed []byte, seID, sdAID string) (scp03.StaticKeys, error) {
	plain, err := a.cfg.Sealer.Open(sealed, seID, sdAID)
	if err != nil {
		return scp03.StaticKeys{}, err
	}
	if len(plain) == 0 || len(plain)%3 != 0 {
		return scp03.StaticKeys{}, fmt.Errorf("sealed keys of %d bytes", len(plain))
	}
	n := len(plain) / 3
	return scp03.StaticKeys{ENC: plain[:n], MAC: plain[n : 2*n], DEK: plain[2*n:]}, nil
}

// newTemporaryKeys draws three AES-128 keys and seals them for the SD.
func (a *App) newTemporaryKeys(seID, sdAID string) (scp03.StaticKeys, []byte, error) {
	plain := make([]byte, 48)
	if _, err := io.ReadFull(a.cfg.Rand, plain); err != nil {
		return scp03.StaticKeys{}, nil, fmt.Errorf("temporary keys: %w", err)
	}
	sealed, err := a.cfg.Sealer.Seal(plain, seID, sdAID)
	if err != nil {
		return scp03.StaticKeys{}, nil, err
	}
	return scp03.StaticKeys{ENC: plain[:16], MAC: plain[16:32], DEK: plain[32:]}, sealed, nil
}

// plainRunCommands are the plain commands of the run phase after EXTERNAL
// AUTHENTICATE: the script's, then the temporary keys' PUT KEY (rebuilt from
// the sealed keys, identically: key encryption and KCVs are deterministic).
func (a *App) plainRunCommands(h *scp03.Host, script domain.Script) ([]string, [][]byte, *contract.Error) {
	plain := append([]string(nil), script.Commands...)
	nk := script.Session.NewKeys
	if nk == nil || nk.Sealed == nil {
		return plain, nil, nil
	}
	keys, err := a.openKeys(nk.Sealed, script.SEID, nk.SDAID)
	if err != nil {
		return nil, nil, contract.Errorf(contract.CodeInternalError,
			"the central TSM cannot open its sealed temporary keys of security domain %s (was SCRIPTROUTER_KEK changed?): contact its operator", nk.SDAID)
	}
	put, kcvs, err := domain.PutKeyCommand(h, nk.KeyVersion, keys)
	clearKeys(keys)
	if err != nil {
		return nil, nil, contract.Errorf(contract.CodeInternalError, "PUT KEY of the temporary keys could not be built")
	}
	return append(plain, put), kcvs, nil
}

func clearKeys(k scp03.StaticKeys) {
	clear(k.ENC)
	clear(k.MAC)
	clear(k.DEK)
}

// advanceSession handles the SE's result of one round trip of the router's
// secure channel: after the open phase it verifies the card, builds and
// sends the run phase; after the run phase it unwraps the responses and
// completes the script (with the temporary keys, wrapped for the SP, when
// it created them).
func (a *App) advanceSession(tx Tx, msg Message, script domain.Script, ex events.SEExecuted, seErr *contract.Error,
	now time.Time, res *Result) error {
	s := *script.Session
	script.Session = &s
	res.Phase = s.Phase
	fail := func(e *contract.Error) error {
		return a.finish(tx, msg, script, domain.RejectedResponse(script.ConversationID, &domain.Rejection{Err: e}), nil, nil, now, res)
	}
	if seErr != nil {
		return a.finish(tx, msg, script, domain.BuildResponse(script, nil, seErr), nil, nil, now, res)
	}
	if s.Phase == domain.PhaseOpen {
		iu, e := s.CheckOpen(ex.Responses)
		if e != nil {
			return fail(e)
		}
		s.InitUpdate = iu
		keys, e := a.sessionKeys(&s, script.SEID)
		if e != nil {
			return fail(e)
		}
		h, ea, e := s.Host(keys)
		if e == nil && s.NewKeys != nil {
			nk := *s.NewKeys
			temp, sealed, err := a.newTemporaryKeys(script.SEID, nk.SDAID)
			if err != nil {
				return err
			}
			clearKeys(temp)
			nk.Sealed = sealed
			s.NewKeys = &nk
		}
		clearKeys(keys)
		if e != nil {
			return fail(e)
		}
		plain, _, e := a.plainRunCommands(h, script)
		if e != nil {
			return fail(e)
		}
		wrapped, err := domain.WrapAll(h, plain)
		if err != nil {
			return fail(contract.Errorf(contract.CodeInternalError, "the central TSM could not wrap the script: %v", err))
		}
		s.Phase = domain.PhaseRun
		if err := tx.Scripts().PutInFlight(script); err != nil {
			return err
		}
		res.Outcome, res.Commands, res.Phase = OutcomeRouted, len(script.Commands), domain.PhaseRun
		return tx.Outbox().DeliverToMNO(script.MNO, msg.CorrelationID, events.MNODeliver{Request: script.Request,
			ConversationID: script.ConversationID, ScriptID: domain.PhaseScriptID(script.ScriptID, domain.PhaseRun),
			SEID: script.SEID, Commands: append([]string{ea}, wrapped...), ContinueOnError: script.ContinueOnError,
			ValidUntil: script.ValidUntil})
	}

	// Run phase.
	if e := s.CheckExternalAuthenticate(ex.Responses); e != nil {
		return fail(e)
	}
	keys, e := a.sessionKeys(&s, script.SEID)
	if e != nil {
		return fail(e)
	}
	h, _, e := s.Host(keys)
	clearKeys(keys)
	if e != nil {
		return fail(e)
	}
	plain, kcvs, e := a.plainRunCommands(h, script)
	if e != nil {
		return fail(e)
	}
	responses := ex.Responses[1:]
	if len(responses) > len(plain) {
		return fail(contract.Errorf(contract.CodeInternalError,
			"the SE returned %d responses for %d commands; the outcome of the script is unknown", len(responses), len(plain)))
	}
	unwrapped, e := domain.UnwrapAll(h, s.SDAID, plain, responses)
	if e != nil {
		return fail(e)
	}
	own := unwrapped[:min(len(unwrapped), len(script.Commands))]
	resp := domain.BuildResponse(script, own, nil)
	var tk *contract.TemporaryKeys
	if nk := s.NewKeys; nk != nil {
		var putErr *contract.Error
		if len(unwrapped) > len(script.Commands) {
			putErr = domain.CheckPutKey(*nk, unwrapped[len(script.Commands)], kcvs)
		} else if resp.Status != contract.StatusFailed {
			putErr = contract.Errorf(contract.CodeSecureElementError,
				"the SE returned no response to the PUT KEY of the temporary keys of security domain %s", nk.SDAID)
		}
		if putErr == nil {
			var rej *domain.Rejection
			var err error
			if tk, rej, err = a.holdTemporaryKeys(tx, script, *nk, now); err != nil {
				return err
			}
			if rej != nil {
				putErr = rej.Err
			}
		}
		if putErr != nil && resp.Status != contract.StatusFailed {
			resp.Result = contract.Failure(putErr)
		}
	}
	rotated, err := a.recordRotations(tx, script, own, now)
	if err != nil {
		return err
	}
	return a.finish(tx, msg, script, resp, tk, rotated, now, res)
}

// holdTemporaryKeys keeps the temporary keys the card confirmed (sd-keys,
// custody central) and wraps them for the SP under its key-transport key.
func (a *App) holdTemporaryKeys(tx Tx, script domain.Script, nk domain.NewKeys, now time.Time) (*contract.TemporaryKeys, *domain.Rejection, error) {
	ktk, rej, err := a.transportKey(tx, nk.SPID)
	if err != nil || rej != nil {
		return nil, rej, err
	}
	keys, err := a.openKeys(nk.Sealed, script.SEID, nk.SDAID)
	if err != nil {
		return nil, domain.Reject(contract.CodeInternalError,
			"the central TSM cannot open its sealed temporary keys of security domain %s: contact its operator", nk.SDAID), nil
	}
	wrapped, err := keycustody.WrapTemporaryKeys(ktk, keys.ENC, keys.MAC, keys.DEK)
	clearKeys(keys)
	clear(ktk)
	if err != nil {
		return nil, domain.Reject(contract.CodeInternalError,
			"the temporary keys could not be wrapped under the key-transport key of SP %s (it must be an AES key): contact the central TSM operator",
			nk.SPID), nil
	}
	if err := tx.Custody().PutHeld(domain.HeldKeys{SEID: script.SEID, SDAID: nk.SDAID, SPID: nk.SPID, KeyVersion: nk.KeyVersion,
		CreatedAt: now, Sealed: nk.Sealed}); err != nil {
		return nil, nil, err
	}
	if err := tx.Custody().Put(domain.Custody{SEID: script.SEID, SDAID: nk.SDAID, SPID: nk.SPID, State: domain.CustodyCentral,
		KeyVersion: nk.KeyVersion, KeysCreatedAt: now, Since: now}); err != nil {
		return nil, nil, err
	}
	return &contract.TemporaryKeys{KeyVersion: nk.KeyVersion, Algorithm: TemporaryKeyAlgorithm, Wrapped: wrapped}, nil, nil
}

// recordRotations looks at the script's PUT KEY commands on the SP's own SD:
// each that the card answered 9000 means the SP replaced the SD's keys. The
// router erases its temporary keys of that SD (if it held any), records the
// custody "sp" and reports the rotation.
func (a *App) recordRotations(tx Tx, script domain.Script, responses []string, now time.Time) ([]events.KeyRotation, error) {
	var out []events.KeyRotation
	for _, put := range script.KeyPuts {
		if put.Index >= len(responses) {
			continue
		}
		if sw, ok := domain.SW(responses[put.Index]); !ok || sw != apdu.SWOK {
			continue
		}
		prev, err := tx.Custody().Get(script.SEID, put.SDAID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if put.InitializeUpdate {
			// Only an SD the SP took over, whose new version the router
			// could not read from its (encrypted) PUT KEY: learn it from the
			// key information of the INITIALIZE UPDATE response (GPC Amd D
			// 7.1.1.2: KDD(10) || KVN || SCP || i || ...).
			kvn, ok := initializeUpdateKVN(responses[put.Index])
			if err != nil || !ok || prev.State != domain.CustodySP || prev.KeyVersion == kvn {
				continue
			}
			prev.KeyVersion = kvn
			if err := tx.Custody().Put(prev); err != nil {
				return nil, err
			}
			out = appendRotation(out, events.KeyRotation{SecurityDomainAID: put.SDAID, KeyVersion: kvn})
			continue
		}
		if err := tx.Custody().DeleteHeld(script.SEID, put.SDAID); err != nil {
			return nil, err
		}
		if err := tx.Custody().Put(domain.Custody{SEID: script.SEID, SDAID: put.SDAID, SPID: script.Request.SPID,
			State: domain.CustodySP, KeyVersion: put.KeyVersion, KeysCreatedAt: prev.KeysCreatedAt, Since: now}); err != nil {
			return nil, err
		}
		out = appendRotation(out, events.KeyRotation{SecurityDomainAID: put.SDAID, KeyVersion: put.KeyVersion})
	}
	return out, nil
}

// appendRotation adds rot to out, replacing an earlier report on the same SD
// (the last one of a script wins).
func appendRotation(out []events.KeyRotation, rot events.KeyRotation) []events.KeyRotation {
	for i := range out {
		if out[i].SecurityDomainAID == rot.SecurityDomainAID {
			out[i] = rot
			return out
		}
	}
	return append(out, rot)
}

// initializeUpdateKVN reads the key version from an INITIALIZE UPDATE
// R-APDU (hex, data || SW).
func initializeUpdateKVN(rapdu string) (int, bool) {
	b, err := hex.DecodeString(rapdu)
	if err != nil || len(b) < 2+13 {
		return 0, false
	}
	kvn := int(b[10])
	return kvn, kvn != 0
}

// Custody returns the key custody of the SP SDs of an SE (never keys).
func (a *App) Custody(seID string) ([]domain.Custody, error) {
	return a.store.ListCustody(seID)
}
