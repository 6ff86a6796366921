package scp03

import (
	"crypto/rand"
	"fmt"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
)

// SessionState is the life cycle of a card-side secure channel session.
type SessionState uint8

const (
	// StateNone: no session (zero value).
	StateNone SessionState = iota
	// StateInitiated: INITIALIZE UPDATE answered, EXTERNAL AUTHENTICATE
	// expected.
	StateInitiated
	// StateAuthenticated: EXTERNAL AUTHENTICATE accepted; commands are
	// unwrapped at Level.
	StateAuthenticated
	// StateAborted: a security error aborted the session. Every further
	// command is rejected with 6982 until a new INITIALIZE UPDATE, a
	// reselection, a channel close or a reset (Amd D v1.2 5.6).
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

// CardSession is the card side of one SCP03 session. Every field is exported
// and JSON-serializable so the simulator can persist the session between
// scripts and across restarts; a value restored from JSON continues the
// session exactly (MAC chain and encryption counter included).
//
// The struct holds session keys and the static Key-DEK: store it like key
// material.
type CardSession struct {
	State SessionState `json:"state"`
	// KVN is the key version number of the key set in use.
	KVN byte `json:"kvn"`
	// I is the i parameter announced in the INITIALIZE UPDATE response.
	I byte `json:"i"`
	// Level is the security level set by EXTERNAL AUTHENTICATE.
	Level byte `json:"level"`

	KDD           []byte `json:"kdd"`
	HostChallenge []byte `json:"host_challenge"`
	CardChallenge []byte `json:"card_challenge"`
	// SequenceCounter is the counter value returned in the INITIALIZE
	// UPDATE response (pseudo-random mode only, see HasSequenceCounter).
	SequenceCounter    uint32 `json:"sequence_counter,omitempty"`
	HasSequenceCounter bool   `json:"has_sequence_counter,omitempty"`

	SENC  []byte `json:"s_enc"`
	SMAC  []byte `json:"s_mac"`
	SRMAC []byte `json:"s_rmac"`
	// DEK is the static Key-DEK, used by PUT KEY (Amd D 7.2).
	DEK []byte `json:"dek,omitempty"`

	// MACChain is the 16-byte C-MAC chaining value: the full C-MAC of the
	// last accepted command.
	MACChain []byte `json:"mac_chain,omitempty"`
	// EncCounter is the encryption counter of the last accepted command
	// (1 for the first command after EXTERNAL AUTHENTICATE).
	EncCounter uint32 `json:"enc_counter"`
}

// CardOption adds optional inputs to BeginCard.
type CardOption func(*cardOptions)

type cardOptions struct {
	seq    uint32
	hasSeq bool
	sdAID  []byte
}

// WithSequenceCounter gives BeginCard the sequence counter value to return in
// the INITIALIZE UPDATE response. It is required when i has the
// pseudo-random bit: the card increments its key set's counter, derives the
// challenge from it and returns it (Amd D 6.2.2.1).
func WithSequenceCounter(seq uint32) CardOption {
	return func(o *cardOptions) { o.seq, o.hasSeq = seq, true }
}

// WithSDAID gives BeginCard the AID of the security domain running the
// channel. With the pseudo-random bit and a nil card challenge, BeginCard
// derives the challenge itself from Key-ENC, the sequence counter and this AID.
func WithSDAID(aid []byte) CardOption {
	return func(o *cardOptions) { o.sdAID = append([]byte(nil), aid...) }
}

// BeginCard answers an INITIALIZE UPDATE: it derives the session keys and
// the card cryptogram and returns the session in StateInitiated with the
// response data field (KDD || KVN || 03 || i || card challenge || card
// cryptogram [|| sequence counter]).
//
// kdd must be 10 bytes; hostChallenge 8 bytes (16 when i has the S16 bit).
// cardChallenge is the challenge to use; nil draws a random one, or, in
// pseudo-random mode with WithSDAID, derives it. In pseudo-random mode (i bit
// b5) WithSequenceCounter is required. Errors are *apdu.StatusError values
// (6A80 for bad inputs from the host, 6A88 for unusable keys).
func BeginCard(keys StaticKeys, kvn byte, i byte, kdd []byte, hostChallenge []byte, cardChallenge []byte, opts ...CardOption) (CardSession, []byte, error) {
	var o cardOptions
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if err := keys.check(); err != nil {
		return CardSession{}, nil, cardErr(apdu.SWReferencedDataNotFound, err, "")
	}
	if len(kdd) != gpcrypto.KDDLength {
		return CardSession{}, nil, cardErr(apdu.SWIncorrectData, ErrFormat, "KDD of %d bytes", len(kdd))
	}
	s16 := i&IS16 != 0
	n := defaultChallengeLength
	if s16 {
		n = s16ChallengeLength
	}
	if len(hostChallenge) != n {
		return CardSession{}, nil, cardErr(apdu.SWWrongLength, ErrFormat, "host challenge of %d bytes, want %d", len(hostChallenge), n)
	}
	pseudo := i&IPseudoRandom != 0
	if pseudo && !o.hasSeq {
		return CardSession{}, nil, cardErr(apdu.SWConditionsNotSatisfied, ErrFormat, "pseudo-random mode needs WithSequenceCounter")
	}
	if o.hasSeq && o.seq > maxSequenceCounter {
		return CardSession{}, nil, cardErr(apdu.SWConditionsNotSatisfied, ErrFormat, "sequence counter exhausted")
	}
	switch {
	case cardChallenge != nil:
	case pseudo && o.sdAID != nil:
		c, err := CardChallenge(keys.ENC, o.seq, o.sdAID, s16)
		if err != nil {
			return CardSession{}, nil, cardErr(apdu.SWIncorrectData, err, "")
		}
		cardChallenge = c
	default:
		cardChallenge = make([]byte, n)
		if _, err := rand.Read(cardChallenge); err != nil {
			return CardSession{}, nil, cardErr(apdu.SWNoSpecificDiagnosis, err, "")
		}
	}
	if len(cardChallenge) != n {
		return CardSession{}, nil, cardErr(apdu.SWIncorrectData, ErrFormat, "card challenge of %d bytes, want %d", len(cardChallenge), n)
	}
	sk, err := DeriveSessionKeys(keys, hostChallenge, cardChallenge)
	if err != nil {
		return CardSession{}, nil, cardErr(apdu.SWReferencedDataNotFound, err, "")
	}
	cc, err := Cryptogram(sk.MAC, gpcrypto.DeriveCardCryptogram, hostChallenge, cardChallenge, s16)
	if err != nil {
		return CardSession{}, nil, cardErr(apdu.SWNoSpecificDiagnosis, err, "")
	}
	s := CardSession{
		State:         StateInitiated,
		KVN:           kvn,
		I:             i,
		KDD:           append([]byte(nil), kdd...),
		HostChallenge: append([]byte(nil), hostChallenge...),
		CardChallenge: append([]byte(nil), cardChallenge...),
		SENC:          sk.ENC,
		SMAC:          sk.MAC,
		SRMAC:         sk.RMAC,
		DEK:           append([]byte(nil), keys.DEK...),
	}
	resp := make([]byte, 0, 13+2*n+3)
	resp = append(resp, kdd...)
	resp = append(resp, kvn, SCPID, i)
	resp = append(resp, cardChallenge...)
	resp = append(resp, cc...)
	if pseudo {
		s.SequenceCounter, s.HasSequenceCounter = o.seq, true
		resp = append(resp, byte(o.seq>>16), byte(o.seq>>8), byte(o.seq))
	}
	return s, resp, nil
}

func (s *CardSession) macLen() int { return macLength(s.I) }

func (s *CardSession) abort(sw uint16, cause error, format string, args ...any) error {
	s.State = StateAborted
	return cardErr(sw, cause, format, args...)
}

// Abort ends the session after a security error: further commands are
// rejected with 6982 until a new session starts.
func (s *CardSession) Abort() { s.State = StateAborted }

// Authenticated reports whether EXTERNAL AUTHENTICATE was accepted and the
// session is not aborted.
func (s *CardSession) Authenticated() bool { return s.State == StateAuthenticated }

// ExternalAuthenticate checks an EXTERNAL AUTHENTICATE command: the security
// level in P1 (valid and allowed by i, else 6A86), the host cryptogram (6300
// on mismatch) and the C-MAC computed with a zero chaining value (6982). On
// success the session is authenticated at that level and the encryption
// counter is reset; on any failure it is aborted. The response carries no
// R-MAC: answer with a plain 9000.
func (s *CardSession) ExternalAuthenticate(cmd apdu.Command) error {
	if s.State != StateInitiated {
		return s.abort(apdu.SWConditionsNotSatisfied, ErrSessionState, "EXTERNAL AUTHENTICATE without INITIALIZE UPDATE")
	}
	if cmd.INS != INSExternalAuthenticate || !apdu.IsSecureMessaging(cmd.CLA) {
		return s.abort(apdu.SWSecurityNotSatisfied, ErrSecurityLevel, "EXTERNAL AUTHENTICATE without secure messaging")
	}
	level := cmd.P1
	if !ValidLevel(level) || !levelAllowedByI(level, s.I) || cmd.P2 != 0 {
		return s.abort(apdu.SWIncorrectP1P2, ErrLevel, "P1=%02X P2=%02X with i=%02X", cmd.P1, cmd.P2, s.I)
	}
	ml := s.macLen()
	if len(cmd.Data) != 2*ml {
		return s.abort(apdu.SWWrongLength, ErrFormat, "EXTERNAL AUTHENTICATE data of %d bytes", len(cmd.Data))
	}
	s16 := s.I&IS16 != 0
	want, err := Cryptogram(s.SMAC, gpcrypto.DeriveHostCryptogram, s.HostChallenge, s.CardChallenge, s16)
	if err != nil {
		return s.abort(apdu.SWSecurityNotSatisfied, err, "")
	}
	hc := cmd.Data[:ml]
	if !gpcrypto.Equal(want, hc) {
		return s.abort(apdu.SWAuthenticationFailed, ErrHostCryptogram, "")
	}
	mac, err := commandMAC(s.SMAC, make([]byte, 16), cmd.CLA, cmd.INS, cmd.P1, cmd.P2, hc, ml, cmd.IsExtended())
	if err != nil {
		return s.abort(apdu.SWSecurityNotSatisfied, err, "")
	}
	if !gpcrypto.Equal(mac[:ml], cmd.Data[ml:]) {
		return s.abort(apdu.SWSecurityNotSatisfied, ErrCMAC, "EXTERNAL AUTHENTICATE")
	}
	s.MACChain = mac
	s.Level = level
	s.EncCounter = 0
	s.State = StateAuthenticated
	return nil
}

// UnwrapCommand verifies and strips the protection of a command received in
// an authenticated session and returns the plain command (secure messaging
// bit cleared, data decrypted, Le kept).
//
// At level 00 a command without secure messaging passes unchanged. At any
// other level the command must carry a valid C-MAC; the encryption counter
// advances and, with C-DEC, the data is decrypted. Any failure aborts the
// session and returns an *apdu.StatusError with SW 6982 (or 6985 when there
// is no authenticated session); the caller answers with that SW.
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
	ml := s.macLen()
	if len(cmd.Data) < ml {
		return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrCMAC, "no C-MAC in %d data bytes", len(cmd.Data))
	}
	body := cmd.Data[:len(cmd.Data)-ml]
	if len(s.MACChain) != 16 {
		return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrSessionState, "corrupt MAC chain")
	}
	mac, err := commandMAC(s.SMAC, s.MACChain, cmd.CLA, cmd.INS, cmd.P1, cmd.P2, body, ml, cmd.IsExtended())
	if err != nil {
		return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, err, "")
	}
	if !gpcrypto.Equal(mac[:ml], cmd.Data[len(body):]) {
		return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrCMAC, "")
	}
	s.MACChain = mac
	s.EncCounter++
	out := apdu.Command{CLA: apdu.WithoutSecureMessaging(cmd.CLA), INS: cmd.INS, P1: cmd.P1, P2: cmd.P2, Le: cmd.Le}
	if s.Level&BitCDEC != 0 && len(body) > 0 {
		if len(body)%16 != 0 {
			return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrDecrypt, "ciphertext of %d bytes", len(body))
		}
		iv, err := icv(s.SENC, s.EncCounter, false)
		if err != nil {
			return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, err, "")
		}
		pt, err := gpcrypto.AESCBCDecrypt(s.SENC, iv, body)
		if err != nil {
			return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrDecrypt, "%v", err)
		}
		pt, err = gpcrypto.Unpad80(pt, 16)
		if err != nil {
			return apdu.Command{}, s.abort(apdu.SWSecurityNotSatisfied, ErrDecrypt, "%v", err)
		}
		out.Data = pt
	} else if len(body) > 0 {
		out.Data = append([]byte(nil), body...)
	}
	out.Extended = len(out.Data) > apdu.MaxShortLc || out.Le > apdu.MaxShortLe
	return out, nil
}

// WrapResponse builds the response APDU (data || [R-MAC] || SW) for the
// command last unwrapped. With R-ENC (level 33) non-empty data is padded and
// encrypted with the response ICV; with R-MAC the MAC over chain || data ||
// SW is appended. Error status words (anything but 9000, 62xx, 63xx) carry
// neither, and neither does any response outside an authenticated session.
// Should the session state be corrupt, it answers 6F00 alone.
func (s *CardSession) WrapResponse(data []byte, sw uint16) []byte {
	plain := apdu.Response{Data: data, SW: sw}
	if s.State != StateAuthenticated || s.Level&BitRMAC == 0 || !apdu.IsSuccessOrWarning(sw) {
		return plain.Bytes()
	}
	body := data
	if s.Level&BitRENC != 0 && len(data) > 0 {
		iv, err := icv(s.SENC, s.EncCounter, true)
		if err != nil {
			return []byte{0x6F, 0x00}
		}
		body, err = gpcrypto.AESCBCEncrypt(s.SENC, iv, gpcrypto.Pad80(data, 16))
		if err != nil {
			return []byte{0x6F, 0x00}
		}
	}
	mac, err := responseMAC(s.SRMAC, s.MACChain, body, sw)
	if err != nil {
		return []byte{0x6F, 0x00}
	}
	out := make([]byte, 0, len(body)+16+2)
	out = append(out, body...)
	out = append(out, mac[:s.macLen()]...)
	return append(out, byte(sw>>8), byte(sw))
}

// DecryptKey decrypts a PUT KEY key block value with the static Key-DEK
// (AES-CBC, zero IV). The result keeps the padding of 24-byte keys.
func (s *CardSession) DecryptKey(block []byte) ([]byte, error) {
	if len(s.DEK) == 0 {
		return nil, cardErr(apdu.SWReferencedDataNotFound, ErrKeys, "no Key-DEK")
	}
	k, err := DecryptKey(s.DEK, block)
	if err != nil {
		return nil, cardErr(apdu.SWIncorrectData, err, "")
	}
	return k, nil
}
