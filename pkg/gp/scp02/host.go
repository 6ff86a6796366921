package scp02

import (
	"fmt"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
)

// DefaultI is the i parameter a Host assumes when HostOptions.I is zero:
// explicit initiation, three keys, ICV encryption (GPC Table E-1).
const DefaultI byte = 0x15

// HostOptions configures a Host.
type HostOptions struct {
	// I is the card's i parameter. The INITIALIZE UPDATE response does not
	// carry it (it comes from card recognition data or configuration); zero
	// means DefaultI.
	I byte
	// Channel is the logical channel (0-19) coded in every CLA.
	Channel int
	// AID, when set with i b7, makes ProcessInitializeUpdate check the
	// pseudo-random card challenge against it.
	AID []byte
	// KVN, when non-zero, makes ProcessInitializeUpdate reject a response
	// naming another key version.
	KVN byte
}

// Host is the off-card side of one SCP02 session. Not safe for concurrent
// use.
type Host struct {
	keys  StaticKeys
	opts  HostOptions
	i     byte
	state int

	hostChallenge []byte
	resp          InitUpdateResponse
	sk            SessionKeys
	level         byte
	chain         []byte
}

const (
	hostNew = iota
	hostInitSent
	hostInitDone
	hostAuthenticated
)

// NewHost returns a host for the given static keys.
func NewHost(keys StaticKeys, opts HostOptions) (*Host, error) {
	if err := keys.check(); err != nil {
		return nil, err
	}
	i := opts.I
	if i == 0 {
		i = DefaultI
	}
	if err := checkI(i); err != nil {
		return nil, err
	}
	if opts.Channel < 0 || opts.Channel > 19 {
		return nil, fmt.Errorf("%w: logical channel %d", ErrFormat, opts.Channel)
	}
	k := StaticKeys{ENC: append([]byte(nil), keys.ENC...), MAC: append([]byte(nil), keys.MAC...), DEK: append([]byte(nil), keys.DEK...)}
	return &Host{keys: k, opts: opts, i: i}, nil
}

func (h *Host) cla(base byte) byte { return apdu.WithChannel(base, h.opts.Channel) }

// InitializeUpdate returns the INITIALIZE UPDATE command for key version kvn
// with an 8-byte host challenge (nil draws a random one).
func (h *Host) InitializeUpdate(kvn byte, hostChallenge []byte) ([]byte, error) {
	if hostChallenge == nil {
		var err error
		if hostChallenge, err = randomBytes(HostChallengeLength); err != nil {
			return nil, err
		}
	}
	if len(hostChallenge) != HostChallengeLength {
		return nil, fmt.Errorf("%w: host challenge of %d bytes", ErrFormat, len(hostChallenge))
	}
	*h = Host{keys: h.keys, opts: h.opts, i: h.i, state: hostInitSent, hostChallenge: append([]byte(nil), hostChallenge...)}
	return apdu.Command{CLA: h.cla(0x80), INS: INSInitializeUpdate, P1: kvn, Data: h.hostChallenge, Le: 0}.Bytes(), nil
}

// ProcessInitializeUpdateResponse takes the complete response APDU (data ||
// SW); a non-9000 status gives an *apdu.StatusError wrapping ErrCard.
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

// ProcessInitializeUpdate parses the response data, derives the session keys
// from the sequence counter and verifies the card cryptogram.
func (h *Host) ProcessInitializeUpdate(data []byte) error {
	if h.state != hostInitSent {
		return fmt.Errorf("%w: no INITIALIZE UPDATE pending", ErrSessionState)
	}
	r, err := ParseInitUpdateResponse(data)
	if err != nil {
		return err
	}
	if h.opts.KVN != 0 && r.KVN != h.opts.KVN {
		return fmt.Errorf("%w: card answered with key version %02X, want %02X", ErrFormat, r.KVN, h.opts.KVN)
	}
	if h.i&IPseudoRandom != 0 && h.opts.AID != nil {
		want, err := PseudoRandomChallenge(h.keys.MAC, r.SequenceCounter, h.opts.AID)
		if err != nil {
			return err
		}
		if !gpcrypto.Equal(want, r.CardChallenge) {
			return fmt.Errorf("%w: pseudo-random card challenge does not verify", ErrCardCryptogram)
		}
	}
	sk, err := DeriveSessionKeys(h.keys, r.SequenceCounter)
	if err != nil {
		return err
	}
	cc, err := CardCryptogram(sk.ENC, h.hostChallenge, r.SequenceCounter, r.CardChallenge)
	if err != nil {
		return err
	}
	if !gpcrypto.Equal(cc, r.CardCryptogram) {
		return ErrCardCryptogram
	}
	h.resp, h.sk, h.state = r, sk, hostInitDone
	return nil
}

// ExternalAuthenticate returns the EXTERNAL AUTHENTICATE command for the
// level (00, 01 or 03): host cryptogram and C-MAC with a zero ICV.
func (h *Host) ExternalAuthenticate(level byte) ([]byte, error) {
	if h.state != hostInitDone {
		return nil, fmt.Errorf("%w: INITIALIZE UPDATE not processed", ErrSessionState)
	}
	if !ValidLevel(level) {
		return nil, fmt.Errorf("%w: %02X", ErrLevel, level)
	}
	hc, err := HostCryptogram(h.sk.ENC, h.hostChallenge, h.resp.SequenceCounter, h.resp.CardChallenge)
	if err != nil {
		return nil, err
	}
	cla := h.cla(0x84)
	mac, err := commandMAC(h.sk.CMAC, make([]byte, 8), h.i&^IUnmodifiedAPDU, cla, INSExternalAuthenticate, level, 0, hc, false)
	if err != nil {
		return nil, err
	}
	h.chain, h.level, h.state = mac, level, hostAuthenticated
	return apdu.Command{CLA: cla, INS: INSExternalAuthenticate, P1: level, Data: concat(hc, mac), Le: apdu.LeAbsent}.Bytes(), nil
}

// Wrap protects a plain command APDU at the session's level: C-MAC over the
// plain command (modified header), then, at level 03, the data is padded and
// 3DES-CBC encrypted under S-ENC with a zero ICV. Le is kept.
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
	out, chain, err := wrap(h.sk, h.i, h.level, h.chain, c)
	if err != nil {
		return apdu.Command{}, err
	}
	h.chain = chain
	return out, nil
}

// wrap applies C-MAC and C-DEC; it returns the wrapped command and the new
// MAC chain.
func wrap(sk SessionKeys, i, level byte, chain []byte, c apdu.Command) (apdu.Command, []byte, error) {
	icv, err := nextICV(sk.CMAC, chain, i)
	if err != nil {
		return apdu.Command{}, nil, err
	}
	data := c.Data
	if level&BitCDEC != 0 && len(data) > 0 {
		data, err = gpcrypto.TripleDESCBCEncrypt(sk.ENC, nil, gpcrypto.Pad80(c.Data, 8))
		if err != nil {
			return apdu.Command{}, nil, err
		}
	}
	if len(data)+MACLength > apdu.MaxExtendedLc {
		return apdu.Command{}, nil, fmt.Errorf("%w: wrapped data too long", ErrFormat)
	}
	ext := c.Extended || len(data)+MACLength > apdu.MaxShortLc || c.Le > apdu.MaxShortLe
	// The MAC covers the plain data; with C-DEC its Lc is still plain + 8.
	mac, err := commandMAC(sk.CMAC, icv, i, c.CLA, c.INS, c.P1, c.P2, c.Data, ext)
	if err != nil {
		return apdu.Command{}, nil, err
	}
	out := apdu.Command{CLA: apdu.WithSecureMessaging(c.CLA), INS: c.INS, P1: c.P1, P2: c.P2, Data: concat(data, mac), Le: c.Le, Extended: ext}
	return out, mac, nil
}

// Unwrap splits a response APDU into data and SW. SCP02 levels 01 and 03
// add no response protection, so the data is returned unchanged.
func (h *Host) Unwrap(rapdu []byte) (data []byte, sw uint16, err error) {
	r, err := apdu.ParseResponse(rapdu)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if h.state != hostAuthenticated {
		return nil, r.SW, fmt.Errorf("%w: not authenticated", ErrSessionState)
	}
	return append([]byte(nil), r.Data...), r.SW, nil
}

// EncryptKey encrypts a new key for PUT KEY under the DEK session key.
func (h *Host) EncryptKey(key []byte) ([]byte, error) {
	if h.state < hostInitDone || len(h.sk.DEK) == 0 {
		return nil, fmt.Errorf("%w: no DEK session key", ErrKeys)
	}
	return EncryptKey(h.sk.DEK, key)
}

// InitUpdate returns the parsed INITIALIZE UPDATE response.
func (h *Host) InitUpdate() InitUpdateResponse { return h.resp }

// SessionKeys returns the session keys (secrets: do not log them).
func (h *Host) SessionKeys() SessionKeys { return h.sk }

// Level returns the security level set by ExternalAuthenticate.
func (h *Host) Level() byte { return h.level }

// Authenticated reports whether ExternalAuthenticate has been built.
func (h *Host) Authenticated() bool { return h.state == hostAuthenticated }

// MACChain returns the last C-MAC (8 bytes).
func (h *Host) MACChain() []byte { return append([]byte(nil), h.chain...) }
