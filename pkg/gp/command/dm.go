package command

import (
	"crypto/sha256"
	"fmt"

	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// TokenDTBS returns the data a Delegated Management token signs (GPC
// Appendix C.4): P1 || P2 || Lc of the data without the token (one byte, or
// 00 XX XX above 255) || the data without the token. For INSTALL the data
// excludes the final token LV entirely (its length byte is not signed); for
// DELETE it excludes the 9E object.
func TokenDTBS(p1, p2 byte, dataWithoutToken []byte) []byte {
	n := len(dataWithoutToken)
	out := []byte{p1, p2}
	if n > 255 {
		out = append(out, 0x00, byte(n>>8), byte(n))
	} else {
		out = append(out, byte(n))
	}
	return append(out, dataWithoutToken...)
}

// AESToken computes an AES token: the 16-byte AES-CMAC of the DTBS under the
// token key (GPC Table C-1 AES scheme, Amd D 8).
func AESToken(key, dtbs []byte) ([]byte, error) { return gpcrypto.CMAC(key, dtbs) }

// VerifyAESToken checks an AES token in constant time.
func VerifyAESToken(key, dtbs, token []byte) (bool, error) {
	if len(token) != 16 {
		return false, nil
	}
	return gpcrypto.VerifyCMAC(key, dtbs, token)
}

// ConfirmationData builds the confirmation data of a receipt (GPC C.5,
// Table 11-14): LV(counter, 2 bytes) || LV(SD unique data) [|| LV(token
// identifier) [|| LV(token data digest)]]. The SD unique data are the values
// of tags 42 and 45 of the Receipt Generation SD (values only: see the open
// point in gp-card.md 6). tokenDigest is only encoded when tokenID is too.
func ConfirmationData(counter uint16, sdUniqueData, tokenID, tokenDigest []byte) []byte {
	var out []byte
	out = tlv.AppendLV(out, []byte{byte(counter >> 8), byte(counter)})
	out = tlv.AppendLV(out, sdUniqueData)
	if tokenID != nil {
		out = tlv.AppendLV(out, tokenID)
		if tokenDigest != nil {
			out = tlv.AppendLV(out, tokenDigest)
		}
	}
	return out
}

func lvs(prefix []byte, fields ...[]byte) []byte {
	out := append([]byte(nil), prefix...)
	for _, f := range fields {
		out = tlv.AppendLV(out, f)
	}
	return out
}

// LoadReceiptInput: confirmation data || ELF || SD (GPC Table C-11).
func LoadReceiptInput(conf, elf, sd []byte) []byte { return lvs(conf, elf, sd) }

// InstallReceiptInput: confirmation data || ELF || instance (Table C-12,
// install and make selectable).
func InstallReceiptInput(conf, elf, instance []byte) []byte { return lvs(conf, elf, instance) }

// ExtraditionReceiptInput: confirmation data || old SD || AID || new SD
// (Table C-13).
func ExtraditionReceiptInput(conf, oldSD, aid, newSD []byte) []byte {
	return lvs(conf, oldSD, aid, newSD)
}

// RegistryUpdateReceiptInput: confirmation data || old SD || application ||
// new SD || privileges || parameters (Table C-14).
func RegistryUpdateReceiptInput(conf, oldSD, app, newSD, privileges, params []byte) []byte {
	return lvs(conf, oldSD, app, newSD, privileges, params)
}

// DeleteReceiptInput: confirmation data || deleted AID (Table C-15; only the
// ELF AID when an ELF and its applications are deleted).
func DeleteReceiptInput(conf, aid []byte) []byte { return lvs(conf, aid) }

// CombinedReceiptInput: confirmation data || ELF || instance || SD for a
// combined load, install and make selectable (Table C-16).
func CombinedReceiptInput(conf, elf, instance, sd []byte) []byte {
	return lvs(conf, elf, instance, sd)
}

// AESReceipt computes an AES receipt: the 16-byte AES-CMAC (zero ICV) of the
// receipt input under the Receipt Generation SD's receipt key.
func AESReceipt(key, input []byte) ([]byte, error) { return gpcrypto.CMAC(key, input) }

// VerifyAESReceipt checks an AES receipt in constant time.
func VerifyAESReceipt(key, input, receipt []byte) (bool, error) {
	if len(receipt) != 16 {
		return false, nil
	}
	return gpcrypto.VerifyCMAC(key, input, receipt)
}

// Confirmation builds the response data of a DM operation: LV(LV(receipt) ||
// confirmation data).
func Confirmation(receipt, conf []byte) []byte {
	inner := tlv.AppendLV(nil, receipt)
	inner = append(inner, conf...)
	return tlv.AppendLV(nil, inner)
}

// ParsedConfirmation is a parsed DM response.
type ParsedConfirmation struct {
	Receipt      []byte
	Counter      uint16
	SDUniqueData []byte
	TokenID      []byte
	TokenDigest  []byte
	// Data is the raw confirmation data (the receipt input prefix).
	Data []byte
}

// ParseConfirmation parses the response data of a DM operation (see
// Confirmation). A response of a single 00 (no confirmation) gives an empty
// result and no error.
func ParseConfirmation(resp []byte) (ParsedConfirmation, error) {
	var pc ParsedConfirmation
	outer, rest, err := tlv.ReadLV(resp)
	if err != nil || len(rest) != 0 {
		return pc, fmt.Errorf("%w: confirmation length", ErrResponse)
	}
	if len(outer) == 0 {
		return pc, nil
	}
	receipt, conf, err := tlv.ReadLV(outer)
	if err != nil {
		return pc, fmt.Errorf("%w: receipt: %v", ErrResponse, err)
	}
	pc.Receipt, pc.Data = receipt, conf
	ctr, r, err := tlv.ReadLV(conf)
	if err != nil || len(ctr) != 2 {
		return pc, fmt.Errorf("%w: confirmation counter", ErrResponse)
	}
	pc.Counter = uint16(ctr[0])<<8 | uint16(ctr[1])
	if pc.SDUniqueData, r, err = tlv.ReadLV(r); err != nil {
		return pc, fmt.Errorf("%w: SD unique data: %v", ErrResponse, err)
	}
	if len(r) > 0 {
		if pc.TokenID, r, err = tlv.ReadLV(r); err != nil {
			return pc, fmt.Errorf("%w: token identifier: %v", ErrResponse, err)
		}
	}
	if len(r) > 0 {
		if pc.TokenDigest, r, err = tlv.ReadLV(r); err != nil {
			return pc, fmt.Errorf("%w: token data digest: %v", ErrResponse, err)
		}
	}
	if len(r) > 0 {
		return pc, fmt.Errorf("%w: %d trailing bytes in confirmation data", ErrResponse, len(r))
	}
	return pc, nil
}

// LFDBHashSHA256 returns the SHA-256 Load File Data Block hash (GPC C.2):
// the hash of the C4 value without tag and length.
func LFDBHashSHA256(lfdb []byte) []byte {
	h := sha256.Sum256(lfdb)
	return h[:]
}

// AESDAP computes an AES DAP: the 16-byte AES-CMAC of the LFDB hash under the
// DAP key (GPC Table C-1, Amd D 8.1).
func AESDAP(key, lfdbHash []byte) ([]byte, error) { return gpcrypto.CMAC(key, lfdbHash) }

// DAPBlock returns the DAP block placed before C4 in the load file:
// E2{4F SD AID, C3 signature}.
func DAPBlock(sdAID, signature []byte) []byte {
	return tlv.EncodeConstructed(0xE2, tlv.Encode(0x4F, sdAID), tlv.Encode(0xC3, signature))
}
