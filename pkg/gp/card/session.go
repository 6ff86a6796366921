package card

import (
	"encoding/binary"
	"errors"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
)

// Secure channel state of one logical channel (GPC 10.2, Amd D 6, GPC
// Appendix E). The struct is plain data so that it survives MarshalBinary:
// a card persisted in the middle of a session continues it after a restore.

// Session stages.
const (
	stageInitialized   = 1 // INITIALIZE UPDATE answered, EXTERNAL AUTHENTICATE expected
	stageAuthenticated = 2 // mutual authentication done, commands are unwrapped
	stageAborted       = 3 // security error: rejected until a new INITIALIZE UPDATE (Amd D 5.6)
)

// Security level bits (EXTERNAL AUTHENTICATE P1; GPC Table 10-1, Amd D 5.1).
const (
	levelCMAC = 0x01
	levelCDEC = 0x02
	levelRMAC = 0x10
	levelRENC = 0x20
)

type session struct {
	SCP           byte   `json:"scp"`
	I             byte   `json:"i"`
	KVN           byte   `json:"kvn"`
	SD            []byte `json:"sd"`
	Stage         int    `json:"stage"`
	Level         byte   `json:"level"`
	HostChallenge []byte `json:"hostChallenge"`
	CardChallenge []byte `json:"cardChallenge"`
	// SCP03: S-ENC, S-MAC, S-RMAC; SCP02: S-ENC, C-MAC, R-MAC, DEK session keys.
	SEnc  []byte `json:"sEnc"`
	SMac  []byte `json:"sMac"`
	SRmac []byte `json:"sRmac"`
	SDek  []byte `json:"sDek,omitempty"`
	// Static DEK of the key set (SCP03 PUT KEY decryption, Amd D 7.2).
	Dek []byte `json:"dek,omitempty"`
	// Chain is the SCP03 MAC chaining value (16 bytes) or the last SCP02 C-MAC (8 bytes).
	Chain []byte `json:"chain"`
	// Counter is the SCP03 encryption counter (Amd D 6.2.6).
	Counter uint32 `json:"counter"`
	// Seq is the sequence counter value used for SCP02 session keys.
	Seq uint32 `json:"seq,omitempty"`
}

var (
	errMAC        = errors.New("card: C-MAC verification failed")
	errPadding    = errors.New("card: bad padding in decrypted data")
	errLength     = errors.New("card: secured data too short")
	errNotSession = errors.New("card: no authenticated secure channel")
)

func (s *session) authenticated() bool { return s != nil && s.Stage == stageAuthenticated }

// beginSCP03 derives the session keys and the card cryptogram (Amd D 6.2.1,
// 6.2.2). cardChallenge is random or pseudo-random (6.2.2.1), chosen by the caller.
func beginSCP03(ks *keySet, i byte, hostChallenge, cardChallenge []byte) (*session, []byte, error) {
	enc, mac, dek := ks.key(1), ks.key(2), ks.key(3)
	if enc == nil || mac == nil || dek == nil {
		return nil, nil, errors.New("card: key set incomplete")
	}
	ctx := append(append([]byte{}, hostChallenge...), cardChallenge...)
	l := len(enc.Value) * 8
	sEnc, err := scp03KDF(enc.Value, 0x04, l, ctx)
	if err != nil {
		return nil, nil, err
	}
	sMac, err := scp03KDF(mac.Value, 0x06, len(mac.Value)*8, ctx)
	if err != nil {
		return nil, nil, err
	}
	sRmac, err := scp03KDF(mac.Value, 0x07, len(mac.Value)*8, ctx)
	if err != nil {
		return nil, nil, err
	}
	cc, err := scp03KDF(sMac, 0x00, 64, ctx)
	if err != nil {
		return nil, nil, err
	}
	s := &session{SCP: 3, I: i, KVN: ks.KVN, Stage: stageInitialized,
		HostChallenge: clone(hostChallenge), CardChallenge: clone(cardChallenge),
		SEnc: sEnc, SMac: sMac, SRmac: sRmac, Dek: clone(dek.Value), Chain: make([]byte, 16)}
	return s, cc, nil
}

// scp03Challenge computes the pseudo-random card challenge (Amd D 6.2.2.1):
// KDF(Key-ENC, 02, 64 bits, sequence counter (3) || SD AID).
func scp03Challenge(keyENC []byte, seq uint32, sdAID []byte) ([]byte, error) {
	ctx := []byte{byte(seq >> 16), byte(seq >> 8), byte(seq)}
	ctx = append(ctx, sdAID...)
	return scp03KDF(keyENC, 0x02, 64, ctx)
}

// scp02SessionKey derives an SCP02 session key (GPC E.4.1): 3DES-CBC, zero
// ICV, of constant || sequence counter || 12 x 00.
func scp02SessionKey(static []byte, constant uint16, seq uint32) ([]byte, error) {
	in := make([]byte, 16)
	binary.BigEndian.PutUint16(in, constant)
	binary.BigEndian.PutUint16(in[2:], uint16(seq))
	return des3CBC(static, nil, in, true)
}

func beginSCP02(ks *keySet, i byte, seq uint32, hostChallenge, cardChallenge []byte) (*session, []byte, error) {
	enc, mac, dek := ks.key(1), ks.key(2), ks.key(3)
	if enc == nil || mac == nil || dek == nil {
		return nil, nil, errors.New("card: key set incomplete")
	}
	s := &session{SCP: 2, I: i, KVN: ks.KVN, Stage: stageInitialized, Seq: seq,
		HostChallenge: clone(hostChallenge), CardChallenge: clone(cardChallenge), Chain: make([]byte, 8)}
	var err error
	if s.SEnc, err = scp02SessionKey(enc.Value, 0x0182, seq); err != nil {
		return nil, nil, err
	}
	if s.SMac, err = scp02SessionKey(mac.Value, 0x0101, seq); err != nil {
		return nil, nil, err
	}
	if s.SRmac, err = scp02SessionKey(mac.Value, 0x0102, seq); err != nil {
		return nil, nil, err
	}
	if s.SDek, err = scp02SessionKey(dek.Value, 0x0181, seq); err != nil {
		return nil, nil, err
	}
	in := append(append(append([]byte{}, hostChallenge...), byte(seq>>8), byte(seq)), cardChallenge...)
	cc, err := fullDES3MAC(s.SEnc, in)
	if err != nil {
		return nil, nil, err
	}
	return s, cc, nil
}

// scp02Challenge is the i b7 pseudo-random card challenge (GPC E.4.2.1):
// the leftmost 6 bytes of the retail MAC under the C-MAC session key over the
// AID of the selected application.
func scp02Challenge(keyMAC []byte, seq uint32, aid []byte) ([]byte, error) {
	k, err := scp02SessionKey(keyMAC, 0x0101, seq)
	if err != nil {
		return nil, err
	}
	m, err := retailMAC(k, nil, aid)
	if err != nil {
		return nil, err
	}
	return m[:6], nil
}

// externalAuthenticate checks the host cryptogram and the C-MAC of
// EXTERNAL AUTHENTICATE (Amd D 7.1.2, GPC E.5.2) and moves the session to
// the authenticated stage. The returned status word is 9000 on success.
func (s *session) externalAuthenticate(cmd apdu.Command) uint16 {
	if len(cmd.Data) != 16 {
		return apdu.SWWrongLength
	}
	host, mac := cmd.Data[:8], cmd.Data[8:]
	var want []byte
	var err error
	switch s.SCP {
	case 3:
		ctx := append(append([]byte{}, s.HostChallenge...), s.CardChallenge...)
		want, err = scp03KDF(s.SMac, 0x01, 64, ctx)
	case 2:
		in := append(append([]byte{byte(s.Seq >> 8), byte(s.Seq)}, s.CardChallenge...), s.HostChallenge...)
		want, err = fullDES3MAC(s.SEnc, in)
	}
	if err != nil || !equalCT(host, want) {
		return apdu.SWAuthenticationFailed
	}
	hdr := []byte{apdu.WithoutChannel(cmd.CLA), cmd.INS, cmd.P1, cmd.P2, byte(len(cmd.Data))}
	full, err := s.computeCMAC(hdr, host, true)
	if err != nil || !equalCT(mac, full[:8]) {
		return apdu.SWSecurityNotSatisfied
	}
	s.Chain = full
	s.Level = cmd.P1
	s.Stage = stageAuthenticated
	s.Counter = 0
	return apdu.SWOK
}

// computeCMAC computes the C-MAC over header || data with the session's
// chaining value. For SCP02, first selects the unencrypted zero ICV of
// EXTERNAL AUTHENTICATE or the (encrypted, i b5) previous C-MAC.
func (s *session) computeCMAC(hdr, data []byte, first bool) ([]byte, error) {
	switch s.SCP {
	case 3:
		in := make([]byte, 0, len(s.Chain)+len(hdr)+len(data))
		in = append(append(append(in, s.Chain...), hdr...), data...)
		return aesCMAC(s.SMac, in)
	case 2:
		icv := make([]byte, 8)
		if !first {
			copy(icv, s.Chain)
			if s.I&0x10 != 0 { // ICV encryption (GPC Table E-1 b5)
				var err error
				if icv, err = desECB1(s.SMac[:8], icv); err != nil {
					return nil, err
				}
			}
		}
		return retailMAC(s.SMac, icv, append(append([]byte{}, hdr...), data...))
	}
	return nil, errNotSession
}

// unwrap verifies the C-MAC and decrypts the data of a secured command
// (Amd D 6.2.4, 6.2.6; GPC E.4.4, E.4.5). data is the full data field of
// the unsegmented command (chained segments already concatenated).
func (s *session) unwrap(cmd apdu.Command) (apdu.Command, error) {
	out := cmd
	out.CLA = apdu.WithoutSecureMessaging(cmd.CLA)
	if s.Level&levelCMAC == 0 {
		// Level 00: commands carry no MAC (EXTERNAL AUTHENTICATE P1=00).
		out.Data = clone(cmd.Data)
		return out, nil
	}
	if len(cmd.Data) < 8 {
		return out, errLength
	}
	body, mac := cmd.Data[:len(cmd.Data)-8], cmd.Data[len(cmd.Data)-8:]
	cla := apdu.WithoutChannel(apdu.WithSecureMessaging(cmd.CLA))
	switch s.SCP {
	case 3:
		s.Counter++
		full, err := s.computeCMAC(lcHeader(cla, cmd, len(cmd.Data)), body, false)
		if err != nil || !equalCT(mac, full[:8]) {
			return out, errMAC
		}
		s.Chain = full
		plain := body
		if s.Level&levelCDEC != 0 && len(body) > 0 {
			if len(body)%16 != 0 {
				return out, errPadding
			}
			icv, err := s.counterBlock(0)
			if err != nil {
				return out, err
			}
			dec, err := aesCBC(s.SEnc, icv, body, false)
			if err != nil {
				return out, err
			}
			var ok bool
			if plain, ok = unpad80(dec); !ok {
				return out, errPadding
			}
		}
		out.Data = clone(plain)
		return out, nil
	case 2:
		plain := body
		if s.Level&levelCDEC != 0 && len(body) > 0 {
			if len(body)%8 != 0 {
				return out, errPadding
			}
			dec, err := des3CBC(s.SEnc, nil, body, false)
			if err != nil {
				return out, err
			}
			var ok bool
			if plain, ok = unpad80(dec); !ok {
				return out, errPadding
			}
		}
		// SCP02 computes the C-MAC over the plain data with Lc = plain + 8
		// (gp-card.md 4, C-DECRYPTION).
		m, err := s.computeCMAC(lcHeader(cla, cmd, len(plain)+8), plain, false)
		if err != nil || !equalCT(mac, m) {
			return out, errMAC
		}
		s.Chain = m
		out.Data = clone(plain)
		return out, nil
	}
	return out, errNotSession
}

// lcHeader is CLA INS P1 P2 Lc with a 1-byte Lc, or the 3-byte 00 XX XX form
// of GPC 11.1.5.1 when the unsegmented data exceeds 255 bytes.
func lcHeader(cla byte, cmd apdu.Command, lc int) []byte {
	if lc > 255 {
		return []byte{cla, cmd.INS, cmd.P1, cmd.P2, 0, byte(lc >> 8), byte(lc)}
	}
	return []byte{cla, cmd.INS, cmd.P1, cmd.P2, byte(lc)}
}

// counterBlock is AES-ECB(S-ENC, counter as 16-byte block with byte 0 set to
// first) — the C-DECRYPTION ICV (first = 00) and R-ENCRYPTION ICV (80).
func (s *session) counterBlock(first byte) ([]byte, error) {
	b := make([]byte, 16)
	b[0] = first
	binary.BigEndian.PutUint32(b[12:], s.Counter)
	return aesECB(s.SEnc, b)
}

// wrapResponse applies R-ENCRYPTION and R-MAC (Amd D 6.2.5, 6.2.7) to a
// response when the session level asks for them and the status word is a
// success or warning. It returns the full R-APDU.
func (s *session) wrapResponse(data []byte, sw uint16) []byte {
	out := append([]byte{}, data...)
	if s.SCP != 3 || !apdu.IsSuccessOrWarning(sw) || s.Level&levelRMAC == 0 {
		return append(out, byte(sw>>8), byte(sw))
	}
	if s.Level&levelRENC != 0 && len(out) > 0 {
		icv, err := s.counterBlock(0x80)
		if err == nil {
			if enc, err := aesCBC(s.SEnc, icv, pad80(out, 16), true); err == nil {
				out = enc
			}
		}
	}
	in := make([]byte, 0, 16+len(out)+2)
	in = append(append(append(in, s.Chain...), out...), byte(sw>>8), byte(sw))
	if m, err := aesCMAC(s.SRmac, in); err == nil {
		out = append(out, m[:8]...)
	}
	return append(out, byte(sw>>8), byte(sw))
}

// decryptKey decrypts a PUT KEY key component: SCP03 AES-CBC under the static
// DEK with zero ICV (Amd D 7.2), SCP02 3DES-ECB under the DEK session key
// (GPC E.4.7).
func (s *session) decryptKey(enc []byte) ([]byte, error) {
	switch s.SCP {
	case 3:
		return aesCBC(s.Dek, nil, enc, false)
	case 2:
		return des3ECB(s.SDek, enc, false)
	}
	return nil, errNotSession
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
