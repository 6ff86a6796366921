// Package scp03 implements the GlobalPlatform Secure Channel Protocol 03
// (GPC v2.3.1 Amendment D, AES-128/192/256) on both sides of the channel:
//
//   - Host (the off-card entity: SP tooling, the script router, tests):
//     NewHost, InitializeUpdate, ProcessInitializeUpdate, ExternalAuthenticate,
//     Wrap and Unwrap.
//   - CardSession (the card simulator): BeginCard answers INITIALIZE UPDATE,
//     then ExternalAuthenticate, UnwrapCommand and WrapResponse. The whole
//     session state is in exported fields and survives a JSON round trip, so
//     the simulator can persist it between scripts.
//
// Section numbers in comments are Amendment D's (v1.1.1, with v1.2 for S16).
package scp03

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
)

// SCP identifier returned in the INITIALIZE UPDATE response.
const SCPID byte = 0x03

// Instruction bytes of the authentication commands.
const (
	INSInitializeUpdate     byte   = 0x50
	INSExternalAuthenticate byte   = 0x82
	INSBeginRMACSession     byte   = 0x7A
	INSEndRMACSession       byte   = 0x78
	defaultChallengeLength         = 8
	s16ChallengeLength             = 16
	sequenceCounterLength          = 3
	maxSequenceCounter      uint32 = 0xFFFFFF
)

// Bits of the i parameter (Amd D Table 5-1; S16 from v1.2).
const (
	// IS16 (b1) selects S16 mode: 16-byte challenges, cryptograms and MACs.
	IS16 byte = 0x01
	// IPseudoRandom (b5) says the card challenge is pseudo-random, derived
	// from the sequence counter, and the counter is returned in the
	// INITIALIZE UPDATE response.
	IPseudoRandom byte = 0x10
	// IRMAC (b6) says R-MAC is supported.
	IRMAC byte = 0x20
	// IRENC (b7) says R-ENCRYPTION is supported (with R-MAC).
	IRENC byte = 0x40
)

// Security level bits (EXTERNAL AUTHENTICATE P1, Amd D Table 7-3).
const (
	// BitCMAC requests C-MAC on every command.
	BitCMAC byte = 0x01
	// BitCDEC requests command data encryption (needs C-MAC).
	BitCDEC byte = 0x02
	// BitRMAC requests R-MAC on every response.
	BitRMAC byte = 0x10
	// BitRENC requests response data encryption (needs R-MAC and C-DEC).
	BitRENC byte = 0x20
)

// The six valid security levels.
const (
	LevelNone           byte = 0x00
	LevelCMAC           byte = 0x01
	LevelCDecCMAC       byte = 0x03
	LevelCMACRMAC       byte = 0x11
	LevelCDecCMACRMAC   byte = 0x13
	LevelCDecCMACRMACRE byte = 0x33
)

// ValidLevel reports whether level is one of 00, 01, 03, 11, 13 and 33.
func ValidLevel(level byte) bool {
	switch level {
	case LevelNone, LevelCMAC, LevelCDecCMAC, LevelCMACRMAC, LevelCDecCMACRMAC, LevelCDecCMACRMACRE:
		return true
	}
	return false
}

// levelAllowedByI reports whether the card's i parameter supports the
// response protection a level asks for.
func levelAllowedByI(level, i byte) bool {
	if level&BitRMAC != 0 && i&(IRMAC|IRENC) == 0 {
		return false
	}
	if level&BitRENC != 0 && i&IRENC == 0 {
		return false
	}
	return true
}

// Errors. On the card side they arrive wrapped in an *apdu.StatusError that
// carries the status word to answer with; match the cause with errors.Is and
// get the SW with apdu.SWOf.
var (
	// ErrCardCryptogram: the card cryptogram in the INITIALIZE UPDATE
	// response does not verify (host side; wrong keys or a fake card).
	ErrCardCryptogram = errors.New("scp03: card cryptogram mismatch")
	// ErrHostCryptogram: the host cryptogram in EXTERNAL AUTHENTICATE does not
	// verify (card side, SW 6300).
	ErrHostCryptogram = errors.New("scp03: host cryptogram mismatch")
	// ErrCMAC: a command's C-MAC does not verify (card side, SW 6982; the
	// session is aborted).
	ErrCMAC = errors.New("scp03: C-MAC verification failed")
	// ErrRMAC: a response's R-MAC does not verify (host side).
	ErrRMAC = errors.New("scp03: R-MAC verification failed")
	// ErrDecrypt: encrypted data does not decrypt to well-padded plaintext.
	ErrDecrypt = errors.New("scp03: decryption failed")
	// ErrSecurityLevel: a command is protected below the session's level, or
	// the session was aborted (SW 6982, Amd D 5.6).
	ErrSecurityLevel = errors.New("scp03: security level not satisfied")
	// ErrSessionState: the operation does not fit the session state, e.g.
	// wrapping before EXTERNAL AUTHENTICATE (SW 6985).
	ErrSessionState = errors.New("scp03: wrong secure channel state")
	// ErrLevel: an invalid or unsupported security level (SW 6A86).
	ErrLevel = errors.New("scp03: invalid security level")
	// ErrFormat: a malformed command, response or parameter.
	ErrFormat = errors.New("scp03: malformed data")
	// ErrKeys: static keys missing or of an unsupported length.
	ErrKeys = errors.New("scp03: invalid keys")
	// ErrCard: the card answered with an error status word (host side; the
	// returned error is an *apdu.StatusError with the SW).
	ErrCard = errors.New("scp03: card returned an error status")
)

func cardErr(sw uint16, cause error, format string, args ...any) error {
	if format != "" {
		cause = fmt.Errorf("%w: %s", cause, fmt.Sprintf(format, args...))
	}
	return apdu.NewStatusError(sw, cause)
}

// StaticKeys is a card key set: Key-ENC, Key-MAC and Key-DEK, AES keys of 16,
// 24 or 32 bytes. ENC and MAC must have the same length.
type StaticKeys struct {
	ENC []byte `json:"enc"`
	MAC []byte `json:"mac"`
	DEK []byte `json:"dek,omitempty"`
}

func (k StaticKeys) check() error {
	switch len(k.ENC) {
	case 16, 24, 32:
	default:
		return fmt.Errorf("%w: Key-ENC of %d bytes", ErrKeys, len(k.ENC))
	}
	if len(k.MAC) != len(k.ENC) {
		return fmt.Errorf("%w: Key-MAC of %d bytes, Key-ENC of %d", ErrKeys, len(k.MAC), len(k.ENC))
	}
	switch len(k.DEK) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("%w: Key-DEK of %d bytes", ErrKeys, len(k.DEK))
	}
	return nil
}

// SessionKeys are the keys derived for one session (Amd D 6.2.1).
type SessionKeys struct {
	ENC  []byte `json:"s_enc"`
	MAC  []byte `json:"s_mac"`
	RMAC []byte `json:"s_rmac"`
}

// DeriveSessionKeys derives S-ENC, S-MAC and S-RMAC from the static keys
// with context = host challenge || card challenge. Each session key has its
// static key's length.
func DeriveSessionKeys(keys StaticKeys, hostChallenge, cardChallenge []byte) (SessionKeys, error) {
	if err := keys.check(); err != nil {
		return SessionKeys{}, err
	}
	ctx := concat(hostChallenge, cardChallenge)
	bits := 8 * len(keys.ENC)
	var sk SessionKeys
	var err error
	if sk.ENC, err = gpcrypto.SCP03KDF(keys.ENC, gpcrypto.DeriveSENC, bits, ctx); err != nil {
		return SessionKeys{}, err
	}
	if sk.MAC, err = gpcrypto.SCP03KDF(keys.MAC, gpcrypto.DeriveSMAC, bits, ctx); err != nil {
		return SessionKeys{}, err
	}
	if sk.RMAC, err = gpcrypto.SCP03KDF(keys.MAC, gpcrypto.DeriveSRMAC, bits, ctx); err != nil {
		return SessionKeys{}, err
	}
	return sk, nil
}

// Cryptogram computes the card (constant 00) or host (constant 01)
// cryptogram under S-MAC: 8 bytes, or 16 in S16 mode (Amd D 6.2.2.2/6.2.2.3).
func Cryptogram(sMAC []byte, constant byte, hostChallenge, cardChallenge []byte, s16 bool) ([]byte, error) {
	bits := 64
	if s16 {
		bits = 128
	}
	return gpcrypto.SCP03KDF(sMAC, constant, bits, concat(hostChallenge, cardChallenge))
}

// PseudoRandomChallenge returns the 8-byte pseudo-random card challenge a
// card with i bit b5 derives from Key-ENC, its 3-byte sequence counter and the
// AID of the security domain running the channel (Amd D 6.2.2.1). It returns
// nil when keyENC is not a valid AES key or seq exceeds 24 bits; use
// CardChallenge for an error instead.
func PseudoRandomChallenge(keyENC []byte, seq uint32, sdAID []byte) []byte {
	c, err := CardChallenge(keyENC, seq, sdAID, false)
	if err != nil {
		return nil
	}
	return c
}

// CardChallenge is PseudoRandomChallenge with an error and S16 support
// (16-byte challenge).
func CardChallenge(keyENC []byte, seq uint32, sdAID []byte, s16 bool) ([]byte, error) {
	if seq > maxSequenceCounter {
		return nil, fmt.Errorf("%w: sequence counter beyond 24 bits", ErrFormat)
	}
	bits := 64
	if s16 {
		bits = 128
	}
	ctx := concat([]byte{byte(seq >> 16), byte(seq >> 8), byte(seq)}, sdAID)
	return gpcrypto.SCP03KDF(keyENC, gpcrypto.DeriveCardChallenge, bits, ctx)
}

// EncryptKey encrypts a new AES key under the static Key-DEK for PUT KEY
// (Amd D 7.2): AES-CBC with a zero IV. A 16 or 32-byte key is encrypted as
// is; a 24-byte key is first padded to 32 bytes with zero bytes (the key
// length field of the key block tells the card what to keep).
func EncryptKey(dek, key []byte) ([]byte, error) {
	switch len(key) {
	case 16, 32:
	case 24:
		key = append(append([]byte(nil), key...), make([]byte, 8)...)
	default:
		return nil, fmt.Errorf("%w: key to encrypt of %d bytes", ErrFormat, len(key))
	}
	return gpcrypto.AESCBCEncrypt(dek, nil, key)
}

// DecryptKey reverses EncryptKey: AES-CBC decryption with a zero IV under
// Key-DEK. The result keeps any padding; the caller cuts it to the key
// length announced in the key block.
func DecryptKey(dek, block []byte) ([]byte, error) {
	if len(block) == 0 || len(block)%16 != 0 {
		return nil, fmt.Errorf("%w: encrypted key of %d bytes", ErrFormat, len(block))
	}
	return gpcrypto.AESCBCDecrypt(dek, nil, block)
}

// InitUpdateResponse is the parsed data field of an INITIALIZE UPDATE
// response (Amd D 7.1.1.6).
type InitUpdateResponse struct {
	KDD             []byte
	KVN             byte
	SCPID           byte
	I               byte
	CardChallenge   []byte
	CardCryptogram  []byte
	SequenceCounter uint32
	// HasSequenceCounter is true when the response carries the 3-byte
	// counter (pseudo-random challenge mode).
	HasSequenceCounter bool
}

// ParseInitUpdateResponse splits an INITIALIZE UPDATE response data field:
// KDD (10) || KVN || 03 || i || card challenge || card cryptogram [|| seq
// (3)]. Challenge and cryptogram are 8 bytes, or 16 when i has the S16 bit.
func ParseInitUpdateResponse(data []byte) (InitUpdateResponse, error) {
	if len(data) < 13 {
		return InitUpdateResponse{}, fmt.Errorf("%w: INITIALIZE UPDATE response of %d bytes", ErrFormat, len(data))
	}
	r := InitUpdateResponse{
		KDD:   append([]byte(nil), data[:10]...),
		KVN:   data[10],
		SCPID: data[11],
		I:     data[12],
	}
	if r.SCPID != SCPID {
		return r, fmt.Errorf("%w: SCP identifier %02X, want 03", ErrFormat, r.SCPID)
	}
	n := defaultChallengeLength
	if r.I&IS16 != 0 {
		n = s16ChallengeLength
	}
	want := 13 + 2*n
	switch len(data) {
	case want:
	case want + sequenceCounterLength:
		s := data[want:]
		r.SequenceCounter = uint32(s[0])<<16 | uint32(s[1])<<8 | uint32(s[2])
		r.HasSequenceCounter = true
	default:
		return r, fmt.Errorf("%w: INITIALIZE UPDATE response of %d bytes, want %d or %d", ErrFormat, len(data), want, want+3)
	}
	r.CardChallenge = append([]byte(nil), data[13:13+n]...)
	r.CardCryptogram = append([]byte(nil), data[13+n:13+2*n]...)
	return r, nil
}

func concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// counterBlock returns the 16-byte big-endian encryption counter block; for
// R-ENC (response) the first byte is set to 80 (Amd D 6.2.6 and 6.2.7).
func counterBlock(counter uint32, response bool) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b[12:], counter)
	if response {
		b[0] = 0x80
	}
	return b
}

// icv computes the C-DEC or R-ENC ICV: AES-ECB(S-ENC, counter block).
func icv(sENC []byte, counter uint32, response bool) ([]byte, error) {
	b, err := gpcrypto.NewAES(sENC)
	if err != nil {
		return nil, err
	}
	blk := counterBlock(counter, response)
	b.Encrypt(blk, blk)
	return blk, nil
}

// macCLA is the class byte covered by the C-MAC: secure messaging set and
// the logical channel number cleared.
func macCLA(cla byte) byte {
	return apdu.WithoutChannel(apdu.WithSecureMessaging(cla))
}

// lcField encodes Lc as the MAC input covers it: one byte in short form,
// 00 hi lo in extended form.
func lcField(n int, extended bool) []byte {
	if extended {
		return []byte{0, byte(n >> 8), byte(n)}
	}
	return []byte{byte(n)}
}

// commandMAC computes the full 16-byte CMAC over chain || CLA' INS P1 P2 Lc'
// || data, where data is the (possibly encrypted) data field without MAC and
// Lc' counts the MAC of macLen bytes.
func commandMAC(sMAC, chain []byte, cla, ins, p1, p2 byte, data []byte, macLen int, extended bool) ([]byte, error) {
	msg := make([]byte, 0, 16+7+len(data))
	msg = append(msg, chain...)
	msg = append(msg, macCLA(cla), ins, p1, p2)
	msg = append(msg, lcField(len(data)+macLen, extended)...)
	msg = append(msg, data...)
	return gpcrypto.CMAC(sMAC, msg)
}

// responseMAC computes the full 16-byte R-MAC input CMAC over chain || data ||
// SW (Amd D 6.2.5).
func responseMAC(sRMAC, chain, data []byte, sw uint16) ([]byte, error) {
	msg := make([]byte, 0, len(chain)+len(data)+2)
	msg = append(msg, chain...)
	msg = append(msg, data...)
	msg = append(msg, byte(sw>>8), byte(sw))
	return gpcrypto.CMAC(sRMAC, msg)
}

func macLength(i byte) int {
	if i&IS16 != 0 {
		return 16
	}
	return 8
}
