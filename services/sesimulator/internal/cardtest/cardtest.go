// Package cardtest holds what the se-simulator's tests and benchmarks share:
// SE records with a pre-issued SP security domain, and the SP's host side of
// an SCP03 session with that domain, keys derived as an SP's tool would.
package cardtest

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"

	"github.com/tsmhub/tsmhub/services/sesimulator/domain"
)

// SPID is the SP owning the pre-issued SD of the test records.
const SPID = "bank-a"

// SDAID is the AID of the pre-issued SP SD of the test records.
const SDAID = "A0000007770A000001"

// SelectISD selects the Issuer Security Domain by AID.
const SelectISD = "00A4040008A000000151000000"

// Record returns an SE record with one pre-issued SD for SPID.
func Record(seID, configuration string) events.SERecord {
	return events.SERecord{SEID: seID, MSI: "+33600000000", MSIType: "MSISDN", MNO: "mno-a", SEType: "UICC",
		Configuration: configuration, ProfileID: "p1", GPVersion: "2.3.1", JavaCardVersion: "3.0.5",
		CertificationLevel: "EAL4+", Status: "active",
		PreIssuedSPDomains: []events.PreIssuedSD{{SPID: SPID, AID: SDAID}}}
}

// SelectSD returns SELECT by AID of the pre-issued SD, in hex.
func SelectSD() string {
	return "00A40400" + strings.ToUpper(hex.EncodeToString([]byte{byte(len(SDAID) / 2)})) + SDAID + "00"
}

// GetStatusPlain is GET STATUS of applications and SDs, TLV format, all AIDs.
var GetStatusPlain = []byte{0x80, 0xF2, 0x40, 0x02, 0x02, 0x4F, 0x00, 0x00}

// Host returns the SP's SCP03 host for the pre-issued SD of the SE: static
// keys kdf3-diversified from the demo SP master key over the card's KDD
// (KDDFromCIN of the SE id), as `--sd-master-key` does in the SP's tool.
func Host(tb testing.TB, seID string) *scp03.Host {
	tb.Helper()
	cin, err := hex.DecodeString(seID)
	if err != nil {
		tb.Fatal(err)
	}
	enc, mac, dek, err := card.DeriveSCP03Keys(domain.DemoSPMasterKey, card.KDDFromCIN(cin))
	if err != nil {
		tb.Fatal(err)
	}
	sd, _ := hex.DecodeString(SDAID)
	h, err := scp03.NewHost(scp03.StaticKeys{ENC: enc, MAC: mac, DEK: dek},
		scp03.HostOptions{SDAID: sd, KVN: card.KVNIssuer})
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// Hex is uppercase hex.
func Hex(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

// Unhex decodes hex or fails the test.
func Unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// SW returns the status word of a hex R-APDU.
func SW(tb testing.TB, rapdu string) uint16 {
	tb.Helper()
	b := Unhex(tb, rapdu)
	return domain.StatusWord(b)
}

// ISDHost returns the issuer's SCP03 host for the ISD of the SE's card:
// static keys kdf3-diversified from the demo issuer master key over the
// card's KDD, key version KVNIssuer.
func ISDHost(tb testing.TB, seID string) *scp03.Host {
	tb.Helper()
	cin, err := hex.DecodeString(seID)
	if err != nil {
		tb.Fatal(err)
	}
	enc, mac, dek, err := card.DeriveSCP03Keys(domain.DemoIssuerMasterKey, card.KDDFromCIN(cin))
	if err != nil {
		tb.Fatal(err)
	}
	h, err := scp03.NewHost(scp03.StaticKeys{ENC: enc, MAC: mac, DEK: dek},
		scp03.HostOptions{SDAID: card.ISDAID, KVN: card.KVNIssuer})
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// StoreDataBlock is STORE DATA block number block of a sequence, to the
// selected SD: one BER-TLV data object DF2x of 128 bytes (a typical
// personalization block; 8 tags rotate, so the card's state stays the same
// size however many blocks it receives). last sets P1 b8.
func StoreDataBlock(block int, last bool) []byte {
	p1 := byte(0x10) // BER-TLV
	if last {
		p1 |= 0x80
	}
	obj := append([]byte{0xDF, byte(0x20 + block%8), 0x81, 0x80}, bytes.Repeat([]byte{byte(block)}, 128)...)
	return append([]byte{0x80, 0xE2, p1, byte(block), byte(len(obj))}, obj...)
}
