// Package scp02 implements the GlobalPlatform Secure Channel Protocol 02
// (GPC v2.3.1 Appendix E, 3DES) on both sides of the channel, with the same
// shape as package scp03:
//
//   - Host: NewHost, InitializeUpdate, ProcessInitializeUpdate,
//     ExternalAuthenticate, Wrap and Unwrap.
//   - CardSession (the card simulator): BeginCard, ExternalAuthenticate,
//     UnwrapCommand and WrapResponse, with the whole state in exported,
//     JSON-serializable fields.
//
// Supported: explicit initiation with three keys (i = 15 and 55 and their
// variants without ICV encryption), C-MAC on the modified APDU, ICV
// encryption (i b5), the well-known pseudo-random card challenge (i b7), and
// security levels 00, 01 (C-MAC) and 03 (C-DECRYPTION + C-MAC). R-MAC (i b6,
// BEGIN R-MAC SESSION) is not implemented: responses pass unchanged.
//
// SCP02 is deprecated by GlobalPlatform but many deployed cards still use it.
package scp02

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
)

// SCP identifier returned in the INITIALIZE UPDATE response.
const SCPID byte = 0x02

// Instruction bytes of the authentication commands.
const (
	INSInitializeUpdate     byte = 0x50
	INSExternalAuthenticate byte = 0x82
)

// Lengths of the INITIALIZE UPDATE fields (GPC E.5.1.6).
const (
	HostChallengeLength = 8
	CardChallengeLength = 6
	CryptogramLength    = 8
	MACLength           = 8
	initUpdateRespLen   = 10 + 1 + 1 + 2 + CardChallengeLength + CryptogramLength
)

// Bits of the i parameter (GPC Table E-1).
const (
	// IThreeKeys (b1): three static keys (ENC, MAC, DEK) instead of one.
	IThreeKeys byte = 0x01
	// IUnmodifiedAPDU (b2): C-MAC on the unmodified APDU.
	IUnmodifiedAPDU byte = 0x02
	// IExplicit (b3): explicit initiation (INITIALIZE UPDATE / EXTERNAL
	// AUTHENTICATE).
	IExplicit byte = 0x04
	// IICVMacOverAID (b4): ICV of the first C-MAC is a MAC over the AID.
	IICVMacOverAID byte = 0x08
	// IICVEncryption (b5): the ICV of every C-MAC after the first is
	// encrypted.
	IICVEncryption byte = 0x10
	// IRMAC (b6): R-MAC supported.
	IRMAC byte = 0x20
	// IPseudoRandom (b7): well-known pseudo-random card challenge.
	IPseudoRandom byte = 0x40
)

// Security levels (EXTERNAL AUTHENTICATE P1).
const (
	LevelNone     byte = 0x00
	LevelCMAC     byte = 0x01
	LevelCDecCMAC byte = 0x03
)

// BitCMAC and BitCDEC are the level bits.
const (
	BitCMAC byte = 0x01
	BitCDEC byte = 0x02
)

// Session key derivation constants (GPC E.4.1).
var (
	constCMAC = [2]byte{0x01, 0x01}
	constRMAC = [2]byte{0x01, 0x02}
	constENC  = [2]byte{0x01, 0x82}
	constDEK  = [2]byte{0x01, 0x81}
)

// Errors. Card-side errors arrive wrapped in an *apdu.StatusError carrying
// the status word to answer with (see apdu.SWOf); match causes with
// errors.Is.
var (
	// ErrCardCryptogram: the card cryptogram does not verify (host side).
	ErrCardCryptogram = errors.New("scp02: card cryptogram mismatch")
	// ErrHostCryptogram: the host cryptogram does not verify (card, 6300).
	ErrHostCryptogram = errors.New("scp02: host cryptogram mismatch")
	// ErrCMAC: a C-MAC does not verify (card, 6982; the session aborts).
	ErrCMAC = errors.New("scp02: C-MAC verification failed")
	// ErrDecrypt: C-DEC data does not decrypt to well-padded plaintext (6982).
	ErrDecrypt = errors.New("scp02: decryption failed")
	// ErrSecurityLevel: a command below the session level, or any command
	// after an abort (6982).
	ErrSecurityLevel = errors.New("scp02: security level not satisfied")
	// ErrSessionState: the operation does not fit the session state (6985).
	ErrSessionState = errors.New("scp02: wrong secure channel state")
	// ErrLevel: a security level other than 00, 01, 03 (6A86).
	ErrLevel = errors.New("scp02: invalid security level")
	// ErrFormat: malformed command, response or parameter.
	ErrFormat = errors.New("scp02: malformed data")
	// ErrKeys: static keys missing or not 16 bytes.
	ErrKeys = errors.New("scp02: invalid keys")
	// ErrUnsupported: an i parameter this package does not implement
	// (implicit initiation, ICV = MAC over AID).
	ErrUnsupported = errors.New("scp02: unsupported i parameter")
	// ErrCard: the card answered INITIALIZE UPDATE with an error status.
	ErrCard = errors.New("scp02: card returned an error status")
)

func cardErr(sw uint16, cause error, format string, args ...any) error {
	if format != "" {
		cause = fmt.Errorf("%w: %s", cause, fmt.Sprintf(format, args...))
	}
	return apdu.NewStatusError(sw, cause)
}

// ValidLevel reports whether level is 00, 01 or 03.
func ValidLevel(level byte) bool {
	return level == LevelNone || level == LevelCMAC || level == LevelCDecCMAC
}

func checkI(i byte) error {
	if i&IICVMacOverAID != 0 {
		return fmt.Errorf("%w: %02X (ICV = MAC over AID)", ErrUnsupported, i)
	}
	if i&IExplicit == 0 {
		return fmt.Errorf("%w: %02X (implicit initiation)", ErrUnsupported, i)
	}
	return nil
}

// StaticKeys is an SCP02 key set: three 16-byte 3DES keys. With a one-key
// card (i b1 = 0) put the same key in all three.
type StaticKeys struct {
	ENC []byte `json:"enc"`
	MAC []byte `json:"mac"`
	DEK []byte `json:"dek,omitempty"`
}

func (k StaticKeys) check() error {
	if len(k.ENC) != 16 || len(k.MAC) != 16 {
		return fmt.Errorf("%w: ENC %d and MAC %d bytes, want 16", ErrKeys, len(k.ENC), len(k.MAC))
	}
	if len(k.DEK) != 0 && len(k.DEK) != 16 {
		return fmt.Errorf("%w: DEK of %d bytes", ErrKeys, len(k.DEK))
	}
	return nil
}

// SessionKeys are the four SCP02 session keys.
type SessionKeys struct {
	ENC  []byte `json:"s_enc"`
	CMAC []byte `json:"c_mac"`
	RMAC []byte `json:"r_mac"`
	DEK  []byte `json:"dek,omitempty"`
}

// DeriveSessionKey computes 3DES-CBC(key, zero IV, constant || seq || 00 x 12).
func DeriveSessionKey(key []byte, constant [2]byte, seq uint16) ([]byte, error) {
	in := make([]byte, 16)
	in[0], in[1] = constant[0], constant[1]
	in[2], in[3] = byte(seq>>8), byte(seq)
	return gpcrypto.TripleDESCBCEncrypt(key, nil, in)
}

// DeriveSessionKeys derives S-ENC, C-MAC, R-MAC and, when the key set has a
// DEK, the DEK session key from the sequence counter.
func DeriveSessionKeys(keys StaticKeys, seq uint16) (SessionKeys, error) {
	if err := keys.check(); err != nil {
		return SessionKeys{}, err
	}
	var sk SessionKeys
	var err error
	if sk.ENC, err = DeriveSessionKey(keys.ENC, constENC, seq); err != nil {
		return SessionKeys{}, err
	}
	if sk.CMAC, err = DeriveSessionKey(keys.MAC, constCMAC, seq); err != nil {
		return SessionKeys{}, err
	}
	if sk.RMAC, err = DeriveSessionKey(keys.MAC, constRMAC, seq); err != nil {
		return SessionKeys{}, err
	}
	if len(keys.DEK) > 0 {
		if sk.DEK, err = DeriveSessionKey(keys.DEK, constDEK, seq); err != nil {
			return SessionKeys{}, err
		}
	}
	return sk, nil
}

func seqBytes(seq uint16) []byte { return []byte{byte(seq >> 8), byte(seq)} }

// CardCryptogram is the full 3DES CBC-MAC (ISO 9797-1 algorithm 1, S-ENC,
// zero ICV) over host challenge || seq || card challenge || padding.
func CardCryptogram(sENC, hostChallenge []byte, seq uint16, cardChallenge []byte) ([]byte, error) {
	in := concat(hostChallenge, seqBytes(seq), cardChallenge)
	return gpcrypto.MACAlg1(sENC, nil, gpcrypto.Pad80(in, 8))
}

// HostCryptogram is the full 3DES CBC-MAC over seq || card challenge ||
// host challenge || padding.
func HostCryptogram(sENC, hostChallenge []byte, seq uint16, cardChallenge []byte) ([]byte, error) {
	in := concat(seqBytes(seq), cardChallenge, hostChallenge)
	return gpcrypto.MACAlg1(sENC, nil, gpcrypto.Pad80(in, 8))
}

// PseudoRandomChallenge computes the well-known pseudo-random card challenge
// of i b7: the 6 leftmost bytes of the retail MAC (C-MAC session key derived
// from keyMAC and seq, zero ICV) over the padded AID of the selected
// application (GPC E.4.2.1).
func PseudoRandomChallenge(keyMAC []byte, seq uint16, aid []byte) ([]byte, error) {
	k, err := DeriveSessionKey(keyMAC, constCMAC, seq)
	if err != nil {
		return nil, err
	}
	m, err := gpcrypto.MACAlg3(k, nil, gpcrypto.Pad80(aid, 8))
	if err != nil {
		return nil, err
	}
	return m[:CardChallengeLength], nil
}

// EncryptKey encrypts a 16-byte key for PUT KEY with 3DES-ECB under the DEK
// session key.
func EncryptKey(sessionDEK, key []byte) ([]byte, error) {
	if len(key) != 16 {
		return nil, fmt.Errorf("%w: key of %d bytes", ErrFormat, len(key))
	}
	return gpcrypto.TripleDESECBEncrypt(sessionDEK, key)
}

// DecryptKey reverses EncryptKey.
func DecryptKey(sessionDEK, block []byte) ([]byte, error) {
	if len(block) == 0 || len(block)%8 != 0 {
		return nil, fmt.Errorf("%w: encrypted key of %d bytes", ErrFormat, len(block))
	}
	return gpcrypto.TripleDESECBDecrypt(sessionDEK, block)
}

// InitUpdateResponse is the parsed INITIALIZE UPDATE response data field:
// KDD (10) || KVN || 02 || seq (2) || card challenge (6) || card cryptogram
// (8). It does not carry i.
type InitUpdateResponse struct {
	KDD             []byte
	KVN             byte
	SCPID           byte
	SequenceCounter uint16
	CardChallenge   []byte
	CardCryptogram  []byte
}

// ParseInitUpdateResponse splits an INITIALIZE UPDATE response data field.
func ParseInitUpdateResponse(data []byte) (InitUpdateResponse, error) {
	if len(data) != initUpdateRespLen {
		return InitUpdateResponse{}, fmt.Errorf("%w: INITIALIZE UPDATE response of %d bytes, want %d", ErrFormat, len(data), initUpdateRespLen)
	}
	r := InitUpdateResponse{
		KDD:             append([]byte(nil), data[:10]...),
		KVN:             data[10],
		SCPID:           data[11],
		SequenceCounter: uint16(data[12])<<8 | uint16(data[13]),
		CardChallenge:   append([]byte(nil), data[14:20]...),
		CardCryptogram:  append([]byte(nil), data[20:28]...),
	}
	if r.SCPID != SCPID {
		return r, fmt.Errorf("%w: SCP identifier %02X, want 02", ErrFormat, r.SCPID)
	}
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

// nextICV returns the ICV for the next C-MAC: zero before the first one
// (EXTERNAL AUTHENTICATE), else the previous C-MAC, DES-ECB encrypted under
// the first half of the C-MAC key when i has ICV encryption.
func nextICV(cmacKey, prev []byte, i byte) ([]byte, error) {
	if len(prev) == 0 {
		return make([]byte, 8), nil
	}
	if len(prev) != 8 {
		return nil, fmt.Errorf("%w: MAC chain of %d bytes", ErrSessionState, len(prev))
	}
	if i&IICVEncryption == 0 {
		return append([]byte(nil), prev...), nil
	}
	b, err := gpcrypto.NewDES(cmacKey[:8])
	if err != nil {
		return nil, err
	}
	out := make([]byte, 8)
	b.Encrypt(out, prev)
	return out, nil
}

func lcField(n int, extended bool) []byte {
	if extended {
		return []byte{0, byte(n >> 8), byte(n)}
	}
	return []byte{byte(n)}
}

// commandMAC computes the retail MAC over header || Lc || data || padding.
// For the modified APDU (the default) the class byte has secure messaging
// set, the channel cleared, and Lc counts the MAC; with i b2 the unmodified
// header and Lc are MACed.
func commandMAC(cmacKey, icv []byte, i byte, cla, ins, p1, p2 byte, data []byte, extended bool) ([]byte, error) {
	mcla, lc := apdu.WithoutChannel(apdu.WithSecureMessaging(cla)), len(data)+MACLength
	if i&IUnmodifiedAPDU != 0 {
		mcla, lc = apdu.WithoutChannel(apdu.WithoutSecureMessaging(cla)), len(data)
	}
	msg := make([]byte, 0, 7+len(data)+8)
	msg = append(msg, mcla, ins, p1, p2)
	if i&IUnmodifiedAPDU == 0 || len(data) > 0 {
		msg = append(msg, lcField(lc, extended)...)
	}
	msg = append(msg, data...)
	return gpcrypto.MACAlg3(cmacKey, icv, gpcrypto.Pad80(msg, 8))
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := rand.Read(b)
	return b, err
}
