package spclient

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
)

// SecureChannelConfig configures an end-to-end SCP03 channel between an SP
// TSM and its own security domain. Give either Keys or MasterKey.
type SecureChannelConfig struct {
	// Keys are the static keys (ENC, MAC, DEK) of the SD's key set.
	Keys *scp03.StaticKeys
	// MasterKey is the SP's SD master key (AES-128/192/256): the static keys
	// are kdf3-diversified from it over the KDD the card returns in INITIALIZE
	// UPDATE, k = 01 ENC, 02 MAC, 03 DEK, exactly as the card factory derives
	// the keys of pre-issued SP SDs (gp/card DeriveSCP03Keys over the card
	// KDD).
	MasterKey []byte
	// SDAID, when set, makes the host also verify a pseudo-random card
	// challenge against this SD AID.
	SDAID []byte
	// Channel is the logical channel (0-19) the session runs on.
	Channel int
}

// SecureChannel is the SP (host) side of one SCP03 session, built on
// gp/scp03's Host. It lives in the SP tool's memory between the scripts of a
// conversation: INITIALIZE UPDATE goes out in one script, its response comes
// back with that script's responses, and EXTERNAL AUTHENTICATE and the wrapped
// commands go out in the next script. Commands wrapped in one batch are
// unwrapped later, each with the MAC chaining value and counter it was wrapped
// with (see Wrapped). A SecureChannel is not safe for concurrent use.
type SecureChannel struct {
	cfg           SecureChannelConfig
	kvn           byte
	hostChallenge []byte
	initSent      bool
	host          *scp03.Host
	macLen        int
}

// NewSecureChannel checks the configuration and returns a channel ready for
// InitializeUpdate.
func NewSecureChannel(cfg SecureChannelConfig) (*SecureChannel, error) {
	switch {
	case cfg.Keys != nil && cfg.MasterKey != nil:
		return nil, errors.New("spclient: give static keys or an SD master key, not both")
	case cfg.Keys != nil:
		// NewHost validates the key lengths.
		if _, err := scp03.NewHost(*cfg.Keys, scp03.HostOptions{Channel: cfg.Channel}); err != nil {
			return nil, fmt.Errorf("spclient: %w", err)
		}
		if len(cfg.Keys.DEK) == 0 {
			return nil, errors.New("spclient: static keys need Key-DEK too (PUT KEY encrypts under it)")
		}
	case cfg.MasterKey != nil:
		switch len(cfg.MasterKey) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("spclient: SD master key of %d bytes: want 16, 24 or 32", len(cfg.MasterKey))
		}
	default:
		return nil, errors.New("spclient: a secure channel needs static keys or an SD master key")
	}
	if cfg.Channel < 0 || cfg.Channel > 19 {
		return nil, fmt.Errorf("spclient: logical channel %d: want 0-19", cfg.Channel)
	}
	return &SecureChannel{cfg: cfg}, nil
}

// KeysFromMaster diversifies an SD master key over a KDD with kdf3 (ENC k=01,
// MAC k=02, DEK k=03), as the card factory does for pre-issued SP SDs.
func KeysFromMaster(master, kdd []byte) (scp03.StaticKeys, error) {
	var k scp03.StaticKeys
	var err error
	if k.ENC, err = gpcrypto.KDF3(master, kdd, gpcrypto.KeyENC); err != nil {
		return k, fmt.Errorf("spclient: diversify Key-ENC: %w", err)
	}
	if k.MAC, err = gpcrypto.KDF3(master, kdd, gpcrypto.KeyMAC); err != nil {
		return k, fmt.Errorf("spclient: diversify Key-MAC: %w", err)
	}
	if k.DEK, err = gpcrypto.KDF3(master, kdd, gpcrypto.KeyDEK); err != nil {
		return k, fmt.Errorf("spclient: diversify Key-DEK: %w", err)
	}
	return k, nil
}

// InitializeUpdate starts a new session: it returns the INITIALIZE UPDATE
// command for key version kvn (00 = the SD's default key set) with a fresh
// random host challenge. Any previous session state is dropped.
func (s *SecureChannel) InitializeUpdate(kvn byte) ([]byte, error) {
	hc := make([]byte, 8)
	if _, err := rand.Read(hc); err != nil {
		return nil, fmt.Errorf("spclient: host challenge: %w", err)
	}
	s.kvn, s.hostChallenge, s.initSent, s.host, s.macLen = kvn, hc, true, nil, 0
	// Built here rather than by scp03.Host because with a master key the
	// static keys are only known from the response's KDD; Host.InitializeUpdate
	// builds the same command (checked in ProcessInitializeUpdateResponse).
	cmd := apdu.Command{CLA: apdu.WithChannel(0x80, s.cfg.Channel), INS: scp03.INSInitializeUpdate, P1: kvn, P2: 0x00, Data: hc, Le: 0}
	return cmd.Bytes(), nil
}

// ProcessInitializeUpdateResponse takes the complete INITIALIZE UPDATE
// response (data || SW), derives the static keys when configured with a
// master key, derives the session keys and verifies the card cryptogram. It
// returns the parsed response (KDD, KVN, i, ...).
func (s *SecureChannel) ProcessInitializeUpdateResponse(rapdu []byte) (scp03.InitUpdateResponse, error) {
	if !s.initSent {
		return scp03.InitUpdateResponse{}, errors.New("spclient: no INITIALIZE UPDATE was built in this session")
	}
	r, err := apdu.ParseResponse(rapdu)
	if err != nil {
		return scp03.InitUpdateResponse{}, fmt.Errorf("spclient: INITIALIZE UPDATE response: %w", err)
	}
	if r.SW != apdu.SWOK {
		return scp03.InitUpdateResponse{}, fmt.Errorf("spclient: INITIALIZE UPDATE answered %04X (%s)", r.SW, apdu.StatusText(r.SW))
	}
	iu, err := scp03.ParseInitUpdateResponse(r.Data)
	if err != nil {
		return iu, fmt.Errorf("spclient: %w", err)
	}
	var keys scp03.StaticKeys
	if s.cfg.Keys != nil {
		keys = *s.cfg.Keys
	} else if keys, err = KeysFromMaster(s.cfg.MasterKey, iu.KDD); err != nil {
		return iu, err
	}
	host, err := scp03.NewHost(keys, scp03.HostOptions{Channel: s.cfg.Channel, SDAID: s.cfg.SDAID, KVN: s.kvn})
	if err != nil {
		return iu, fmt.Errorf("spclient: %w", err)
	}
	if _, err := host.InitializeUpdate(s.kvn, s.hostChallenge); err != nil {
		return iu, fmt.Errorf("spclient: %w", err)
	}
	if err := host.ProcessInitializeUpdate(r.Data); err != nil {
		if errors.Is(err, scp03.ErrCardCryptogram) {
			return iu, fmt.Errorf("spclient: the card cryptogram does not verify: wrong keys for key version %02X of this SD (%w)", iu.KVN, err)
		}
		return iu, fmt.Errorf("spclient: %w", err)
	}
	s.host = host
	s.initSent = false
	s.macLen = 8
	if iu.I&scp03.IS16 != 0 {
		s.macLen = 16
	}
	return iu, nil
}

// ExternalAuthenticate returns the EXTERNAL AUTHENTICATE command for a
// security level (00, 01, 03, 11, 13 or 33, as the card's i allows). From
// then on Wrap protects commands at that level.
func (s *SecureChannel) ExternalAuthenticate(level byte) ([]byte, error) {
	if s.host == nil {
		return nil, errors.New("spclient: EXTERNAL AUTHENTICATE needs the processed INITIALIZE UPDATE response first")
	}
	cmd, err := s.host.ExternalAuthenticate(level)
	if err != nil {
		return nil, fmt.Errorf("spclient: %w", err)
	}
	return cmd, nil
}

// CheckExternalAuthenticateResponse reports whether the card accepted the
// host cryptogram (SW 9000).
func CheckExternalAuthenticateResponse(rapdu []byte) error {
	r, err := apdu.ParseResponse(rapdu)
	if err != nil {
		return fmt.Errorf("spclient: EXTERNAL AUTHENTICATE response: %w", err)
	}
	if r.SW != apdu.SWOK {
		return fmt.Errorf("spclient: EXTERNAL AUTHENTICATE answered %04X (%s): the session is not open", r.SW, apdu.StatusText(r.SW))
	}
	return nil
}

// Authenticated reports whether EXTERNAL AUTHENTICATE was built, so Wrap and
// Unwrap can be used.
func (s *SecureChannel) Authenticated() bool { return s.host != nil && s.host.Authenticated() }

// Level returns the session's security level.
func (s *SecureChannel) Level() byte {
	if s.host == nil {
		return 0
	}
	return s.host.Level()
}

// Wrapped is a protected command and what its response needs to be checked:
// the C-MAC chaining value and encryption counter the command was wrapped
// with. The R-MAC of a response chains on the C-MAC of its own command, so a
// response must be unwrapped with the state of its command, not the
// channel's latest one, when several commands travel in one script.
type Wrapped struct {
	// Command is the protected C-APDU to send.
	Command []byte
	level   byte
	chain   []byte
	counter uint32
}

// Wrap protects a plain C-APDU at the session's level (C-MAC, and C-DEC of
// the data when the level has it).
func (s *SecureChannel) Wrap(plain []byte) (*Wrapped, error) {
	if !s.Authenticated() {
		return nil, errors.New("spclient: wrap needs an authenticated session (EXTERNAL AUTHENTICATE first)")
	}
	cmd, err := s.host.Wrap(plain)
	if err != nil {
		return nil, fmt.Errorf("spclient: %w", err)
	}
	return &Wrapped{Command: cmd, level: s.host.Level(), chain: s.host.MACChain(), counter: s.host.EncryptionCounter()}, nil
}

// Unwrapped is a verified response.
type Unwrapped struct {
	// Data is the plain response data (R-MAC removed, decrypted).
	Data []byte
	SW   uint16
	// RMACVerified is true when the response carried an R-MAC and it
	// verified; Decrypted when its data was R-ENC encrypted.
	RMACVerified bool
	Decrypted    bool
}

// Unwrap verifies the R-MAC of the response to w (when the level has R-MAC)
// and decrypts its data (R-ENC). Error status words carry no protection and
// come back as they are. A wrong R-MAC gives an error wrapping scp03.ErrRMAC.
func (s *SecureChannel) Unwrap(w *Wrapped, rapdu []byte) (*Unwrapped, error) {
	r, err := apdu.ParseResponse(rapdu)
	if err != nil {
		return nil, fmt.Errorf("spclient: response: %w", err)
	}
	out := &Unwrapped{Data: append([]byte(nil), r.Data...), SW: r.SW}
	if w.level&scp03.BitRMAC == 0 || !apdu.IsSuccessOrWarning(r.SW) {
		return out, nil
	}
	if s.host == nil {
		return nil, errors.New("spclient: unwrap without a session")
	}
	sk := s.host.SessionKeys()
	if len(r.Data) < s.macLen {
		return nil, fmt.Errorf("spclient: response of %d bytes has no R-MAC: %w", len(r.Data), scp03.ErrRMAC)
	}
	body := r.Data[:len(r.Data)-s.macLen]
	msg := make([]byte, 0, len(w.chain)+len(body)+2)
	msg = append(append(append(msg, w.chain...), body...), byte(r.SW>>8), byte(r.SW))
	mac, err := gpcrypto.CMAC(sk.RMAC, msg)
	if err != nil {
		return nil, fmt.Errorf("spclient: %w", err)
	}
	if !gpcrypto.Equal(mac[:s.macLen], r.Data[len(body):]) {
		return nil, fmt.Errorf("spclient: %w", scp03.ErrRMAC)
	}
	out.RMACVerified = true
	out.Data = append([]byte(nil), body...)
	if w.level&scp03.BitRENC == 0 || len(body) == 0 {
		return out, nil
	}
	// R-ENC ICV (Amd D 6.2.7): AES(S-ENC, counter block with byte 0 = 80).
	block, err := gpcrypto.NewAES(sk.ENC)
	if err != nil {
		return nil, fmt.Errorf("spclient: %w", err)
	}
	iv := make([]byte, 16)
	iv[0] = 0x80
	iv[12], iv[13], iv[14], iv[15] = byte(w.counter>>24), byte(w.counter>>16), byte(w.counter>>8), byte(w.counter)
	block.Encrypt(iv, iv)
	pt, err := gpcrypto.AESCBCDecrypt(sk.ENC, iv, body)
	if err != nil {
		return nil, fmt.Errorf("spclient: %w: %v", scp03.ErrDecrypt, err)
	}
	if pt, err = gpcrypto.Unpad80(pt, 16); err != nil {
		return nil, fmt.Errorf("spclient: %w: %v", scp03.ErrDecrypt, err)
	}
	out.Data = pt
	out.Decrypted = true
	return out, nil
}

// PutKey returns the plain PUT KEY command (GPC 11.8, Amd D 7.2) that
// replaces key set oldKVN (00 adds a new key set) by newKVN with the AES keys
// ENC, MAC and DEK (ids 01-03), each encrypted under the session's static
// Key-DEK and followed by its KCV, and the response data the card must answer
// with (newKVN || the three KCVs). Wrap the command before sending it.
func (s *SecureChannel) PutKey(oldKVN, newKVN byte, keys scp03.StaticKeys) (cmd, expect []byte, err error) {
	if !s.Authenticated() {
		return nil, nil, errors.New("spclient: PUT KEY needs an authenticated session")
	}
	data, expect, err := putKeyData(func(k []byte) ([]byte, error) { return s.host.EncryptKey(k) }, newKVN, keys)
	if err != nil {
		return nil, nil, err
	}
	c := apdu.Command{CLA: apdu.WithChannel(0x80, s.cfg.Channel), INS: 0xD8, P1: oldKVN, P2: 0x81, Data: data, Le: 0}
	return c.Bytes(), expect, nil
}

// putKeyData builds the PUT KEY data field: newKVN || per key: 88 Lkd
// keyLength encryptedKey 03 KCV.
func putKeyData(encrypt func([]byte) ([]byte, error), newKVN byte, keys scp03.StaticKeys) (data, expect []byte, err error) {
	if newKVN == 0 || newKVN > 0x7F {
		return nil, nil, fmt.Errorf("spclient: new key version %02X: want 01-7F", newKVN)
	}
	n := len(keys.ENC)
	if (n != 16 && n != 24 && n != 32) || len(keys.MAC) != n || len(keys.DEK) != n {
		return nil, nil, fmt.Errorf("spclient: PUT KEY needs three AES keys of one length (16, 24 or 32 bytes), got %d/%d/%d",
			len(keys.ENC), len(keys.MAC), len(keys.DEK))
	}
	data = []byte{newKVN}
	expect = []byte{newKVN}
	for _, k := range [][]byte{keys.ENC, keys.MAC, keys.DEK} {
		enc, err := encrypt(k)
		if err != nil {
			return nil, nil, fmt.Errorf("spclient: encrypt key: %w", err)
		}
		kcv, err := gpcrypto.AESKCV(k)
		if err != nil {
			return nil, nil, fmt.Errorf("spclient: key check value: %w", err)
		}
		kd := append([]byte{byte(len(k))}, enc...)
		data = append(data, 0x88, byte(len(kd)))
		data = append(data, kd...)
		data = append(data, byte(len(kcv)))
		data = append(data, kcv...)
		expect = append(expect, kcv...)
	}
	return data, expect, nil
}
