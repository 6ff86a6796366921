// Package command builds the GlobalPlatform card content management commands
// an off-card entity sends (GPC v2.3.1 chapter 11) and parses their
// responses: SELECT, GET STATUS, GET DATA, INSTALL, LOAD, DELETE, PUT KEY,
// SET STATUS, STORE DATA and MANAGE CHANNEL, plus the Delegated Management
// token and receipt computations and the DAP block (GPC Appendix C).
//
// Builders return plain commands with CLA 80 (GP) or 00 (ISO) on logical
// channel 0; wrap them with scp02/scp03 and re-code the channel with
// apdu.WithChannel as needed. Worked examples are in
// shared/testdata/gp-derived.json and the tests reproduce them byte for byte.
package command

import (
	"errors"
	"fmt"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// Class bytes.
const (
	CLAISO byte = 0x00
	CLAGP  byte = 0x80
)

// Instruction bytes (GPC Table 11-10).
const (
	INSSelect        byte = 0xA4
	INSManageChannel byte = 0x70
	INSInstall       byte = 0xE6
	INSLoad          byte = 0xE8
	INSDelete        byte = 0xE4
	INSPutKey        byte = 0xD8
	INSGetStatus     byte = 0xF2
	INSSetStatus     byte = 0xF0
	INSGetData       byte = 0xCA
	INSGetDataOdd    byte = 0xCB
	INSStoreData     byte = 0xE2
)

// Errors.
var (
	// ErrAID: an AID outside 5-16 bytes where one is required.
	ErrAID = errors.New("command: invalid AID length")
	// ErrTooLong: the data field exceeds 255 bytes; GP commands are short
	// APDUs and longer data must be split with GP chaining.
	ErrTooLong = errors.New("command: data field longer than 255 bytes")
	// ErrParam: an invalid parameter.
	ErrParam = errors.New("command: invalid parameter")
	// ErrResponse: a response that does not parse.
	ErrResponse = errors.New("command: malformed response")
)

func checkAID(name string, aid []byte) error {
	if len(aid) < 5 || len(aid) > 16 {
		return fmt.Errorf("%w: %s of %d bytes", ErrAID, name, len(aid))
	}
	return nil
}

func checkOptionalAID(name string, aid []byte) error {
	if len(aid) == 0 {
		return nil
	}
	return checkAID(name, aid)
}

func gp(ins, p1, p2 byte, data []byte, le int) (apdu.Command, error) {
	if len(data) > apdu.MaxShortLc {
		return apdu.Command{}, fmt.Errorf("%w (%d)", ErrTooLong, len(data))
	}
	return apdu.Command{CLA: CLAGP, INS: ins, P1: p1, P2: p2, Data: data, Le: le}, nil
}

// Select returns SELECT by name (00 A4 04 00 Lc AID 00). An empty AID gives
// 00 A4 04 00 00, which selects the ISD (GPC 11.9.2).
func Select(aid []byte) apdu.Command {
	return apdu.Command{CLA: CLAISO, INS: INSSelect, P1: 0x04, P2: 0x00, Data: aid, Le: 0}
}

// SelectNext returns SELECT by name for the next occurrence (P2 02) of a
// partial AID.
func SelectNext(aid []byte) apdu.Command {
	c := Select(aid)
	c.P2 = 0x02
	return c
}

// ManageChannelOpen returns MANAGE CHANNEL open, letting the card choose the
// channel (P2 00); the response is the channel number (Le 01). channel is
// the logical channel the command is sent on.
func ManageChannelOpen(channel int) apdu.Command {
	return apdu.Command{CLA: apdu.WithChannel(CLAISO, channel), INS: INSManageChannel, P1: 0x00, P2: 0x00, Le: 1}
}

// ManageChannelClose returns MANAGE CHANNEL close of channel ch, sent on
// channel ch.
func ManageChannelClose(ch int) apdu.Command {
	return apdu.Command{CLA: apdu.WithChannel(CLAISO, ch), INS: INSManageChannel, P1: 0x80, P2: byte(ch), Le: apdu.LeAbsent}
}

// GetData returns GET DATA with CLA 80 for a one or two-byte tag (80 CA
// tag-high tag-low 00); the card returns the whole TLV (GPC 11.3).
func GetData(tag uint16) apdu.Command {
	return apdu.Command{CLA: CLAGP, INS: INSGetData, P1: byte(tag >> 8), P2: byte(tag), Le: 0}
}

// GetDataISO returns the ISO form of GET DATA (CLA 00), for which the card
// returns only the value.
func GetDataISO(tag uint16) apdu.Command {
	c := GetData(tag)
	c.CLA = CLAISO
	return c
}

// GET STATUS subsets (P1, GPC Table 11-33).
const (
	StatusISD         byte = 0x80
	StatusApps        byte = 0x40
	StatusELFs        byte = 0x20
	StatusELFsModules byte = 0x10
)

// GetStatus returns GET STATUS for a subset (P1 80/40/20/10) in the TLV
// response format: P2 02 for the first (or all) occurrences, 03 for the
// next ones after a 6310. aid filters by AID prefix (nil: all, 4F 00); tags,
// when present, is the tag list of a 5C object asking for specific data
// objects (e.g. 0x4F, 0x9F70, 0xC5).
func GetStatus(subset byte, next bool, aid []byte, tags ...uint32) (apdu.Command, error) {
	switch subset {
	case StatusISD, StatusApps, StatusELFs, StatusELFsModules:
	default:
		return apdu.Command{}, fmt.Errorf("%w: GET STATUS P1 %02X", ErrParam, subset)
	}
	p2 := byte(0x02)
	if next {
		p2 = 0x03
	}
	data := tlv.Encode(0x4F, aid)
	if len(tags) > 0 {
		var list []byte
		for _, t := range tags {
			list = append(list, tlv.TagBytes(t)...)
		}
		data = append(data, tlv.Encode(0x5C, list)...)
	}
	return gp(INSGetStatus, subset, p2, data, 0)
}

// SET STATUS scopes (P1, GPC Table 11-77).
const (
	SetStatusCard     byte = 0x80
	SetStatusApp      byte = 0x40
	SetStatusSDAndApp byte = 0x60
)

// SetStatus returns SET STATUS for a scope and new state (P2). aid is
// ignored for SetStatusCard (no data field).
func SetStatus(scope, state byte, aid []byte) (apdu.Command, error) {
	switch scope {
	case SetStatusCard:
		return gp(INSSetStatus, scope, state, nil, apdu.LeAbsent)
	case SetStatusApp, SetStatusSDAndApp:
		if err := checkAID("AID", aid); err != nil {
			return apdu.Command{}, err
		}
		return gp(INSSetStatus, scope, state, aid, apdu.LeAbsent)
	}
	return apdu.Command{}, fmt.Errorf("%w: SET STATUS P1 %02X", ErrParam, scope)
}

// LockApp returns SET STATUS locking an application or SD (P2 80).
func LockApp(aid []byte) (apdu.Command, error) { return SetStatus(SetStatusApp, 0x80, aid) }

// UnlockApp returns SET STATUS unlocking an application or SD (P2 00: back to
// the previous state).
func UnlockApp(aid []byte) (apdu.Command, error) { return SetStatus(SetStatusApp, 0x00, aid) }

// STORE DATA P1 bits (GPC Table 11-85).
const (
	StoreDataLast          byte = 0x80
	StoreDataEncAppDep     byte = 0x20
	StoreDataEncrypted     byte = 0x60
	StoreDataFormatDGI     byte = 0x08
	StoreDataFormatBERTLV  byte = 0x10
	StoreDataExpectsAnswer byte = 0x01
)

// StoreData returns STORE DATA with the given P1 flags and block number. No
// Le is sent unless P1 has StoreDataExpectsAnswer.
func StoreData(p1, block byte, data []byte) (apdu.Command, error) {
	le := apdu.LeAbsent
	if p1&StoreDataExpectsAnswer != 0 {
		le = 0
	}
	return gp(INSStoreData, p1, block, data, le)
}

// Load returns one LOAD block: P1 80 on the last block, 00 before; P2 the
// block number.
func Load(block byte, last bool, data []byte) (apdu.Command, error) {
	p1 := byte(0x00)
	if last {
		p1 = 0x80
	}
	return gp(INSLoad, p1, block, data, 0)
}

// LoadBlocks splits a load file (DAP blocks and C4 LFDB, already encoded) into
// LOAD commands of at most blockSize data bytes (1-255).
func LoadBlocks(loadFile []byte, blockSize int) ([]apdu.Command, error) {
	if blockSize < 1 || blockSize > apdu.MaxShortLc {
		return nil, fmt.Errorf("%w: block size %d", ErrParam, blockSize)
	}
	n := (len(loadFile) + blockSize - 1) / blockSize
	if n > 256 {
		return nil, fmt.Errorf("%w: %d blocks exceed 256", ErrParam, n)
	}
	var out []apdu.Command
	for i := 0; i < n; i++ {
		end := (i + 1) * blockSize
		if end > len(loadFile) {
			end = len(loadFile)
		}
		c, err := Load(byte(i), i == n-1, loadFile[i*blockSize:end])
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Delete returns DELETE of a card content object (4F AID), optionally with
// its related objects (P2 80: an ELF and its instances, an SD and its
// associated applications) and a Delegated Management token (9E). crt is an
// optional B6 control reference template value (42, 45, 5F20, 93), nil when
// absent.
func Delete(aid []byte, related bool, crt, token []byte) (apdu.Command, error) {
	data, err := DeleteData(aid, crt)
	if err != nil {
		return apdu.Command{}, err
	}
	if token != nil {
		data = append(data, tlv.Encode(0x9E, token)...)
	}
	return gp(INSDelete, 0x00, deleteP2(related), data, 0)
}

func deleteP2(related bool) byte {
	if related {
		return 0x80
	}
	return 0x00
}

// DeleteData returns the DELETE data field without token: 4F AID [B6 crt].
func DeleteData(aid, crt []byte) ([]byte, error) {
	if err := checkAID("AID", aid); err != nil {
		return nil, err
	}
	data := tlv.Encode(0x4F, aid)
	if crt != nil {
		data = append(data, tlv.Encode(0xB6, crt)...)
	}
	return data, nil
}

// DeleteTokenDTBS returns the data the token of a DELETE signs (GPC Table
// C-9): P1 P2 Lc (of the data without the token) data-without-token.
func DeleteTokenDTBS(aid []byte, related bool, crt []byte) ([]byte, error) {
	data, err := DeleteData(aid, crt)
	if err != nil {
		return nil, err
	}
	return TokenDTBS(0x00, deleteP2(related), data), nil
}

// DeleteKey returns DELETE of a key: D0 key id and/or D2 key version (pass
// a negative value to omit one).
func DeleteKey(keyID, kvn int) (apdu.Command, error) {
	var data []byte
	if keyID >= 0 {
		if keyID > 0x7F {
			return apdu.Command{}, fmt.Errorf("%w: key id %d", ErrParam, keyID)
		}
		data = append(data, tlv.Encode(0xD0, []byte{byte(keyID)})...)
	}
	if kvn >= 0 {
		if kvn > 0x7F {
			return apdu.Command{}, fmt.Errorf("%w: key version %d", ErrParam, kvn)
		}
		data = append(data, tlv.Encode(0xD2, []byte{byte(kvn)})...)
	}
	if data == nil {
		return apdu.Command{}, fmt.Errorf("%w: DELETE key needs a key id or a version", ErrParam)
	}
	return gp(INSDelete, 0x00, 0x00, data, 0)
}
