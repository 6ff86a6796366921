package scp03

import (
	"crypto/rand"
	"fmt"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
)

// HostOptions configures a Host.
type HostOptions struct {
	// Channel is the logical channel (0-19) the session runs on; it is coded
	// in the CLA of every command the host builds or wraps.
	Channel int
	// S16 requests S16 mode: a 16-byte host challenge. The card confirms the
	// mode with i bit b1.
	S16 bool
	// SDAID, when set, makes ProcessInitializeUpdate also check a
	// pseudo-random card challenge against Key-ENC, the returned sequence
	// counter and this SD AID.
	SDAID []byte
	// KVN, when non-zero, makes ProcessInitializeUpdate reject a response
	// that names another key version.
	KVN byte
}

// Host is the off-card side of an SCP03 session. A Host is not safe for
// concurrent use; one Host runs one session.
type Host struct {
	keys  StaticKeys
	opts  HostOptions
	state hostState

	hostChallenge []byte
	resp          InitUpdateResponse
	sk            SessionKeys
	level         byte
	chain         []byte
	counter       uint32
	macLen        int
}

type hostState int

const (
	hostNew hostState = iota
	hostInitSent
	hostInitDone
	hostAuthenticated
)

// NewHost returns a host for the given static keys.
func NewHost(keys StaticKeys, opts HostOptions) (*Host, error) {
	if err := keys.check(); err != nil {
		return nil, err
	}
	if opts.Channel < 0 || opts.Channel > 19 {
		return nil, fmt.Errorf("%w: logical channel %d", ErrFormat, opts.Channel)
	}
	k := StaticKeys{
		ENC: append([]byte(nil), keys.ENC...),
		MAC: append([]byte(nil), keys.MAC...),
		DEK: append([]byte(nil), keys.DEK...),
	}
	return &Host{keys: k, opts: opts}, nil
}

func (h *Host) cla(base byte) byte { return apdu.WithChannel(base, h.opts.Channel) }

// InitializeUpdate returns the INITIALIZE UPDATE command for key version kvn
// (00 = first available) and the given host challenge (8 bytes, 16 in S16
// mode; nil draws a random one). It starts a new session.
func (h *Host) InitializeUpdate(kvn byte, hostChallenge []byte) ([]byte, error) {
	n := defaultChallengeLength
	if h.opts.S16 {
		n = s16ChallengeLength
	}
	if hostChallenge == nil {
		hostChallenge = make([]byte, n)
		if _, err := rand.Read(hostChallenge); err != nil {
			return nil, err
		}
	}
	if len(hostChallenge) != n {
		return nil, fmt.Errorf("%w: host challenge of %d bytes, want %d", ErrFormat, len(hostChallenge), n)
	}
	*h = Host{keys: h.keys, opts: h.opts, state: hostInitSent, hostChallenge: append([]byte(nil), hostChallenge...)}
	cmd := apdu.Command{CLA: h.cla(0x80), INS: INSInitializeUpdate, P1: kvn, P2: 0x00, Data: h.hostChallenge, Le: 0}
	return cmd.Bytes(), nil
}

// ProcessInitializeUpdateResponse takes the complete INITIALIZE UPDATE
// response APDU (data || SW1 SW2). A status other than 9000 gives an error
// wrapping ErrCard and carrying the SW; otherwise see ProcessInitializeUpdate.
func (h *Host) ProcessInitializeUpdateResponse(rapdu []byte) error {
	r, err := apdu.ParseResponse(rapdu)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if r.SW != apdu.SWOK {
		return apdu.NewStatusError(r.SW, ErrCard)
	}
	return h.ProcessInitializeUpdate(r.Data)
}

// ProcessInitializeUpdate parses the INITIALIZE UPDATE response data field,
// derives the session keys and verifies the card cryptogram (ErrCardCryptogram
// on mismatch).
func (h *Host) ProcessInitializeUpdate(data []byte) error {
	if h.state != hostInitSent {
		return fmt.Errorf("%w: no INITIALIZE UPDATE pending", ErrSessionState)
	}
	r, err := ParseInitUpdateResponse(data)
	if err != nil {
		return err
	}
	s16 := r.I&IS16 != 0
	if s16 != h.opts.S16 {
		return fmt.Errorf("%w: card i=%02X does not match the requested S16 mode", ErrFormat, r.I)
	}
	if h.opts.KVN != 0 && r.KVN != h.opts.KVN {
		return fmt.Errorf("%w: card answered with key version %02X, want %02X", ErrFormat, r.KVN, h.opts.KVN)
	}
	if r.I&IPseudoRandom != 0 && !r.HasSequenceCounter {
		return fmt.Errorf("%w: pseudo-random mode without sequence counter", ErrFormat)
	}
	if r.I&IPseudoRandom != 0 && h.opts.SDAID != nil {
		want, err := CardChallenge(h.keys.ENC, r.SequenceCounter, h.opts.SDAID, s16)
		if err != nil {
			return err
		}
		if !gpcrypto.Equal(want, r.CardChallenge) {
			return fmt.Errorf("%w: pseudo-random card challenge does not verify", ErrCardCryptogram)
		}
	}
	sk, err := DeriveSessionKeys(h.keys, h.hostChallenge, r.CardChallenge)
	if err != nil {
		return err
	}
	cc, err := Cryptogram(sk.MAC, gpcrypto.DeriveCardCryptogram, h.hostChallenge, r.CardChallenge, s16)
	if err != nil {
		return err
	}
	if !gpcrypto.Equal(cc, r.CardCryptogram) {
		return ErrCardCryptogram
	}
	h.resp = r
	h.sk = sk
	h.macLen = macLength(r.I)
	h.state = hostInitDone
	return nil
}

// ExternalAuthenticate returns the EXTERNAL AUTHENTICATE command for the
// security level (P1): host cryptogram and C-MAC computed with a zero
// chaining value. The level must be valid and supported by the card's i.
func (h *Host) ExternalAuthenticate(level byte) ([]byte, error) {
	if h.state != hostInitDone {
		return nil, fmt.Errorf("%w: INITIALIZE UPDATE not processed", ErrSessionState)
	}
	if !ValidLevel(level) || !levelAllowedByI(level, h.resp.I) {
		return nil, fmt.Errorf("%w: %02X with i=%02X", ErrLevel, level, h.resp.I)
	}
	s16 := h.resp.I&IS16 != 0
	hc, err := Cryptogram(h.sk.MAC, gpcrypto.DeriveHostCryptogram, h.hostChallenge, h.resp.CardChallenge, s16)
	if err != nil {
		return nil, err
	}
	cla := h.cla(0x84)
	mac, err := commandMAC(h.sk.MAC, make([]byte, 16), cla, INSExternalAuthenticate, level, 0x00, hc, h.macLen, false)
	if err != nil {
		return nil, err
	}
	h.chain = mac
	h.level = level
	h.counter = 0
	h.state = hostAuthenticated
	cmd := apdu.Command{CLA: cla, INS: INSExternalAuthenticate, P1: level, P2: 0x00, Data: concat(hc, mac[:h.macLen]), Le: apdu.LeAbsent}
	return cmd.Bytes(), nil
}

// Wrap protects a plain command APDU at the session's level: the encryption
// counter advances, the data is encrypted when the level has C-DEC, and the
// C-MAC is appended. Le is kept.
func (h *Host) Wrap(plain []byte) ([]byte, error) {
	c, err := apdu.Parse(plain)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	w, err := h.WrapCommand(c)
	if err != nil {
		return nil, err
	}
	return w.Encode()
}

// WrapCommand is Wrap on a parsed command.
func (h *Host) WrapCommand(c apdu.Command) (apdu.Command, error) {
	if h.state != hostAuthenticated {
		return apdu.Command{}, fmt.Errorf("%w: not authenticated", ErrSessionState)
	}
	if err := c.Check(); err != nil {
		return apdu.Command{}, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if h.level&BitCMAC == 0 {
		return c.Clone(), nil
	}
	h.counter++
	data := c.Data
	if h.level&BitCDEC != 0 && len(data) > 0 {
		iv, err := icv(h.sk.ENC, h.counter, false)
		if err != nil {
			return apdu.Command{}, err
		}
		data, err = gpcrypto.AESCBCEncrypt(h.sk.ENC, iv, gpcrypto.Pad80(data, 16))
		if err != nil {
			return apdu.Command{}, err
		}
	}
	if len(data)+h.macLen > apdu.MaxExtendedLc {
		return apdu.Command{}, fmt.Errorf("%w: wrapped data of %d bytes too long", ErrFormat, len(data)+h.macLen)
	}
	out := apdu.Command{CLA: apdu.WithSecureMessaging(c.CLA), INS: c.INS, P1: c.P1, P2: c.P2, Le: c.Le, Extended: c.Extended}
	ext := out.Extended || len(data)+h.macLen > apdu.MaxShortLc || c.Le > apdu.MaxShortLe
	out.Extended = ext
	mac, err := commandMAC(h.sk.MAC, h.chain, out.CLA, c.INS, c.P1, c.P2, data, h.macLen, ext)
	if err != nil {
		return apdu.Command{}, err
	}
	h.chain = mac
	out.Data = concat(data, mac[:h.macLen])
	return out, nil
}

// Unwrap checks and strips the protection of a response APDU (data || SW1
// SW2): the R-MAC is verified when the level has R-MAC (ErrRMAC on mismatch)
// and the data decrypted when it has R-ENC. Error status words carry no
// protection and are returned as they are.
func (h *Host) Unwrap(rapdu []byte) (data []byte, sw uint16, err error) {
	r, err := apdu.ParseResponse(rapdu)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if h.state != hostAuthenticated {
		return nil, r.SW, fmt.Errorf("%w: not authenticated", ErrSessionState)
	}
	if h.level&BitRMAC == 0 || !apdu.IsSuccessOrWarning(r.SW) {
		return append([]byte(nil), r.Data...), r.SW, nil
	}
	if len(r.Data) < h.macLen {
		return nil, r.SW, fmt.Errorf("%w: response of %d bytes has no R-MAC", ErrRMAC, len(r.Data))
	}
	body := r.Data[:len(r.Data)-h.macLen]
	mac, err := responseMAC(h.sk.RMAC, h.chain, body, r.SW)
	if err != nil {
		return nil, r.SW, err
	}
	if !gpcrypto.Equal(mac[:h.macLen], r.Data[len(body):]) {
		return nil, r.SW, ErrRMAC
	}
	if h.level&BitRENC == 0 || len(body) == 0 {
		return append([]byte(nil), body...), r.SW, nil
	}
	iv, err := icv(h.sk.ENC, h.counter, true)
	if err != nil {
		return nil, r.SW, err
	}
	pt, err := gpcrypto.AESCBCDecrypt(h.sk.ENC, iv, body)
	if err != nil {
		return nil, r.SW, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	pt, err = gpcrypto.Unpad80(pt, 16)
	if err != nil {
		return nil, r.SW, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	return pt, r.SW, nil
}

// EncryptKey encrypts a new key under the static Key-DEK for PUT KEY.
func (h *Host) EncryptKey(key []byte) ([]byte, error) {
	if len(h.keys.DEK) == 0 {
		return nil, fmt.Errorf("%w: no Key-DEK", ErrKeys)
	}
	return EncryptKey(h.keys.DEK, key)
}

// HostChallenge returns the host challenge of the current session.
func (h *Host) HostChallenge() []byte { return append([]byte(nil), h.hostChallenge...) }

// InitUpdate returns the parsed INITIALIZE UPDATE response (zero before
// ProcessInitializeUpdate succeeded).
func (h *Host) InitUpdate() InitUpdateResponse { return h.resp }

// SessionKeys returns the session keys (zero before ProcessInitializeUpdate
// succeeded). They are secrets: do not log them.
func (h *Host) SessionKeys() SessionKeys { return h.sk }

// Level returns the security level set by ExternalAuthenticate.
func (h *Host) Level() byte { return h.level }

// Authenticated reports whether ExternalAuthenticate has been built, so Wrap
// and Unwrap can be used.
func (h *Host) Authenticated() bool { return h.state == hostAuthenticated }

// MACChain returns the current 16-byte C-MAC chaining value.
func (h *Host) MACChain() []byte { return append([]byte(nil), h.chain...) }

// EncryptionCounter returns the C-DEC counter of the last wrapped command.
func (h *Host) EncryptionCounter() uint32 { return h.counter }
