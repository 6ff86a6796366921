package scp02

import (
	"fmt"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
)

// SessionState is the life cycle of a card-side session (same values as
// scp03.SessionState).
type SessionState uint8

const (
	// StateNone: no session.
	StateNone SessionState = iota
	// StateInitiated: INITIALIZE UPDATE answered.
	StateInitiated
	// StateAuthenticated: EXTERNAL AUTHENTICATE accepted.
	StateAuthenticated
	// StateAborted: a security error aborted the session; further commands
	// get 6982 until a new session starts.
	StateAborted
)

// String returns the state name.
func (s SessionState) String() string {
	switch s {
	case StateNone:
		return "none"
	case StateInitiated:
		return "initiated"
	case StateAuthenticated:
		return "authenticated"
	case StateAborted:
		return "aborted"
	}
	return fmt.Sprintf("SessionState(%d)", uint8(s))
}

// CardSession is the card side of one SCP02 session; every field is exported
// and JSON-serializable. It holds session keys: store it like key material.
//
// GPC E.4.1: the card increments the key set's sequence counter after the
// first successful C-MAC verification of a session; UnwrapCommand reports
// that moment through FirstCMAC so the simulator can persist the counter.
type CardSession struct {
	State SessionState `json:"state"`
	KVN   byte         `json:"kvn"`
	I     byte         `json:"i"`
	Level byte         `json:"level"`

	KDD             []byte `json:"kdd"`
	HostChallenge   []byte `json:"host_challenge"`
	CardChallenge   []byte `json:"card_challenge"`
	SequenceCounter uint16 `json:"sequence_counter"`

	SENC []byte `json:"s_enc"`
	CMAC []byte `json:"c_mac"`
	RMAC []byte `json:"r_mac"`
	// DEK is the DEK session key (PUT KEY key encryption).
	DEK []byte `json:"dek,omitempty"`

	// MACChain is the last accepted C-MAC (8 bytes), the ICV source of the
	// next command.
	MACChain []byte `json:"mac_chain,omitempty"`
	// Commands counts the commands accepted after EXTERNAL AUTHENTICATE.
	Commands uint32 `json:"commands"`
}

// CardOption adds optional inputs to BeginCard.
type CardOption func(*cardOptions)

type cardOptions struct{ aid []byte }

// WithAID gives BeginCard the AID of the selected application, used to
// derive the pseudo-random card challenge (i b7) when cardChallenge is nil.
func WithAID(aid []byte) CardOption {
	return func(o *cardOptions) { o.aid = append([]byte(nil), aid...) }
}

// BeginCard answers an INITIALIZE UPDATE: it derives the session keys from
// seq (the key set's current sequence counter), computes the card cryptogram
// and returns the session with the 28-byte response data field.
//
// cardChallenge (6 bytes) is injectable for tests; nil draws a random one,
// or with i b7 and WithAID derives the pseudo-random one. Errors are
// *apdu.StatusError values.
func BeginCard(keys StaticKeys, kvn byte, i byte, kdd []byte, seq uint16, hostChallenge []byte, cardChallenge []byte, opts ...CardOption) (CardSession, []byte, error) {
	var o cardOptions
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if err := keys.check(); err != nil {
		return CardSession{}, nil, cardErr(apdu.SWReferencedDataNotFound, err, "")
	}
	if err := checkI(i); err != nil {
		return CardSession{}, nil, cardErr(apdu.SWConditionsNotSatisfied, err, "")
	}
	if len(kdd) != gpcrypto.KDDLength {
		return CardSession{}, nil, cardErr(apdu.SWIncorrectData, ErrFormat, "KDD of %d bytes", len(kdd))
	}
	if len(hostChallenge) != HostChallengeLength {
		return CardSession{}, nil, cardErr(apdu.SWWrongLength, ErrFormat, "host challenge of %d bytes", len(hostChallenge))
	}
	if cardChallenge == nil {
		var err error
		if i&IPseudoRandom != 0 && o.aid != nil {
			cardChallenge, err = PseudoRandomChallenge(keys.MAC, seq, o.aid)
		} else {
			cardChallenge, err = randomBytes(CardChallengeLength)
		}
		if err != nil {
			return CardSession{}, nil, cardErr(apdu.SWNoSpecificDiagnosis, err, "")
		}
	}
	if len(cardChallenge) != CardChallengeLength {
		return CardSession{}, nil, cardErr(apdu.SWIncorrectData, ErrFormat, "card challenge of %d bytes", len(cardChallenge))
	}
	sk, err := DeriveSessionKeys(keys, seq)
	if err != nil {
		return CardSession{}, nil, cardErr(apdu.SWReferencedDataNotFound, err, "")
	}
	cc, err := CardCryptogram(sk.ENC, hostChallenge, seq, cardChallenge)
	if err != nil {
		return CardSession{}, nil, cardErr(apdu.SWNoSpecificDiagnosis, err, "")
	}
	s := CardSession{
		State:           StateInitiated,
		KVN:             kvn,
		I:               i,
		KDD:             append([]byte(nil), kdd...),
		HostChallenge:   append([]byte(nil), hostChallenge...),
		CardChallenge:   append([]byte(nil), cardChallenge...),
		SequenceCounter: seq,
		SENC:            sk.ENC,
		CMAC:            sk.CMAC,
		RMAC:            sk.RMAC,
		DEK:             sk.DEK,
	}
	resp := concat(kdd, []byte{kvn, SCPID}, seqBytes(seq), cardChallenge, cc)
	return s, resp, nil
}

func (s *CardSession) abort(sw uint16, cause error, format string, args ...any) error {
	s.State = StateAborted
	return cardErr(sw, cause, format, args...)
}

// Abort ends the session after a security error.
func (s *CardSession) Abort() { s.State = StateAborted }

// Authenticated reports whether EXTERNAL AUTHENTICATE was accepted and the
// session is not aborted.
func (s *CardSession) Authenticated() bool { return s.State == StateAuthenticated }

// FirstCMAC reports whether exactly one command has been accepted since
// EXTERNAL AUTHENTICATE, i.e. the moment the card increments the key set's
// sequence counter.
func (s *CardSession) FirstCMAC() bool { return s.State == StateAuthenticated && s.Commands == 1 }

// ExternalAuthenticate checks an EXTERNAL AUTHENTICATE command: level in P1
// (6A86 when invalid), host cryptogram (6300), C-MAC with zero ICV (6982).
// Any failure aborts the session.
func (s *CardSession) ExternalAuthenticate(cmd apdu.Command) error {
	if s.State != StateInitiated {
		return s.abort(apdu.SWConditionsNotSatisfied, ErrSessionState, "EXTERNAL AUTHENTICATE without INITIALIZE UPDATE")
	}
	if cmd.INS != INSExternalAuthenticate || !apdu.IsSecureMessaging(cmd.CLA) {
		return s.abort(apdu.SWSecurityNotSatisfied, ErrSecurityLevel, "EXTERNAL AUTHENTICATE without secure messaging")
	}
	if !ValidLevel(cmd.P1) || cmd.P2 != 0 {
		return s.abort(apdu.SWIncorrectP1P2, ErrLevel, "P1=%02X P2=%02X", cmd.P1, cmd.P2)
	}
	if len(cmd.Data) != CryptogramLength+MACLength {
		return s.abort(apdu.SWWrongLength, ErrFormat, "EXTERNAL AUTHENTICATE data of %d bytes", len(cmd.Data))
	}
	want, err := HostCryptogram(s.SENC, s.HostChallenge, s.SequenceCounter, s.CardChallenge)
	if err != nil {
		return s.abort(apdu.SWSecurityNotSatisfied, err, "")
	}
	hc := cmd.Data[:CryptogramLength]
	if !gpcrypto.Equal(want, hc) {
		return s.abort(apdu.SWAuthenticationFailed, ErrHostCryptogram, "")
	}
	mac, err := commandMAC(s.CMAC, make([]byte, 8), s.I&^IUnmodifiedAPDU, cmd.CLA, cmd.INS, cmd.P1, cmd.P2, hc, cmd.IsExtended())
	if err != nil {
		return s.abort(apdu.SWSecurityNotSatisfied, err, "")
	}
	if !gpcrypto.Equal(mac, cmd.Data[CryptogramLength:]) {
		return s.abort(apdu.SWSecurityNotSatisfied, ErrCMAC, "EXTERNAL AUTHENTICATE")
	}
	s.MACChain, s.Level, s.Commands, s.State = mac, cmd.P1, 0, StateAuthenticated
	return nil
}

// UnwrapCommand verifies and strips the protection of a command (C-DEC
// decryption at level 03, then the C-MAC over the plain command) and returns
// the plain command. Failures abort the session with an *apdu.StatusError
// carrying 6982 (6985 without an authenticated session).
func (s *CardSession) UnwrapCommand(cmd apdu.Command) (apdu.Command, error) {
	switch s.State {
	case StateAuthenticated:
	case StateAborted:
		return apdu.Command{}, cardErr(apdu.SWSecurityNotSatisfied, ErrSecurityLevel, "session aborted")
	default:
		return apdu.Command{}, s.abort(apdu.SWConditionsNotSatisfied, ErrSessionState, "session not authenticated")
	}
	if s.Level&BitCMAC == 0 {
		if apdu.IsSecureMessaging(cmd.CLA) {
			return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrSecurityLevel, "secure messaging at level 00")
		}
		return cmd.Clone(), nil
	}
	if !apdu.IsSecureMessaging(cmd.CLA) {
		return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrSecurityLevel, "command without C-MAC at level %02X", s.Level)
	}
	if len(cmd.Data) < MACLength {
		return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrCMAC, "no C-MAC in %d data bytes", len(cmd.Data))
	}
	body := cmd.Data[:len(cmd.Data)-MACLength]
	plain := body
	if s.Level&BitCDEC != 0 && len(body) > 0 {
		if len(body)%8 != 0 {
			return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrDecrypt, "ciphertext of %d bytes", len(body))
		}
		pt, err := gpcrypto.TripleDESCBCDecrypt(s.SENC, nil, body)
		if err != nil {
			return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrDecrypt, "%v", err)
		}
		if plain, err = gpcrypto.Unpad80(pt, 8); err != nil {
			return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrDecrypt, "%v", err)
		}
	}
	if len(s.CMAC) != 16 {
		return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrSessionState, "corrupt session keys")
	}
	icv, err := nextICV(s.CMAC, s.MACChain, s.I)
	if err != nil {
		return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, err, "")
	}
	mac, err := commandMAC(s.CMAC, icv, s.I, cmd.CLA, cmd.INS, cmd.P1, cmd.P2, plain, cmd.IsExtended())
	if err != nil {
		return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, err, "")
	}
	if !gpcrypto.Equal(mac, cmd.Data[len(body):]) {
		return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrCMAC, "")
	}
	s.MACChain = mac
	s.Commands++
	out := apdu.Command{CLA: apdu.WithoutSecureMessaging(cmd.CLA), INS: cmd.INS, P1: cmd.P1, P2: cmd.P2, Le: cmd.Le}
	if len(plain) > 0 {
		out.Data = append([]byte(nil), plain...)
	}
	out.Extended = len(out.Data) > apdu.MaxShortLc || out.Le > apdu.MaxShortLe
	return out, nil
}

// WrapResponse returns data || SW. SCP02 levels 00, 01 and 03 add nothing to
// responses; the method exists so the simulator treats both protocols alike.
func (s *CardSession) WrapResponse(data []byte, sw uint16) []byte {
	return apdu.Response{Data: data, SW: sw}.Bytes()
}

// DecryptKey decrypts a PUT KEY key block value with the DEK session key
// (3DES-ECB).
func (s *CardSession) DecryptKey(block []byte) ([]byte, error) {
	if len(s.DEK) == 0 {
		return nil, cardErr(apdu.SWReferencedDataNotFound, ErrKeys, "no DEK")
	}
	k, err := DecryptKey(s.DEK, block)
	if err != nil {
		return nil, cardErr(apdu.SWIncorrectData, err, "")
	}
	return k, nil
}
