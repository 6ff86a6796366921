package card

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
)

// Well-known AIDs of a simulated card.
//
// The ISD AID is the GlobalPlatform default (GPC H.1.3). The CASD AID is the
// one GlobalPlatform registered for the Controlling Authority Security Domain
// (GP Amendment A). The SSD package and module are the JCOP ones that
// gp-card.md 2.4 uses for INSTALL of an SP SD. Every other SD AID lives under
// the RID A000000777, chosen for tsmhub; it is not a registered RID, which is
// fine for a simulator and keeps our AIDs apart from real ones. The layout is
// A000000777 || role (1 byte) || 00 00.
var (
	// ISDAID is the Issuer Security Domain (the central SD in Embedded).
	ISDAID = mustHex("A000000151000000")
	// CentralSDAID is the central TSM's SD (AM) in UICC, Embedded3P and
	// UICC3P. In Embedded the central SD is the ISD: use CentralSD(cfg).
	CentralSDAID = mustHex("A000000777010000")
	// MNOSDAID is the mobile network operator's SD (AM) on UICCs.
	MNOSDAID = mustHex("A000000777020000")
	// ThirdPartySDAID is the SD (AM) of a third-party TSM in the -3p configurations.
	ThirdPartySDAID = mustHex("A000000777030000")
	// DMSPSDAID is the pre-issued SP SD with Delegated Management in the
	// -3p configurations (under the central SD).
	DMSPSDAID = mustHex("A000000777060000")
	// MandatedDAPSDAID is the verification authority's SD with Mandated DAP
	// Verification in Embedded3P.
	MandatedDAPSDAID = mustHex("A000000777040000")
	// MDPHSDAID is the SD with Mandated DAP Verification, Token Verification
	// and Receipt Generation in UICC3P (GP Table 12.1 role).
	MDPHSDAID = mustHex("A000000777050000")
	// CASDAID is the Controlling Authority SD in the -3p configurations.
	CASDAID = mustHex("A00000015153504341534400")

	// SSDPackageAID and SSDModuleAID are the pre-loaded Security Domain
	// package and module, from which INSTALL creates supplementary SDs.
	SSDPackageAID = mustHex("A0000001515350")
	// SSDModuleAID is the SD module of SSDPackageAID.
	SSDModuleAID = mustHex("A000000151535041")

	// GenericELFAID and GenericModuleAID are the defaults of the generic
	// payment application pre-loaded under the central SD (DESIGN.md 4).
	GenericELFAID = mustHex("A00000055501")
	// GenericModuleAID is the module of GenericELFAID.
	GenericModuleAID = mustHex("A0000005550101")

	// TelecomELFAID, TelecomModuleAID and TelecomAppletAID are the MNO's
	// telecom application (a USIM-like instance, 3GPP RID A000000087) under
	// the MNO SD on UICCs.
	TelecomELFAID = mustHex("A0000000871002")
	// TelecomModuleAID is the module of TelecomELFAID.
	TelecomModuleAID = mustHex("A0000000871002FF")
	// TelecomAppletAID is the instance of TelecomModuleAID.
	TelecomAppletAID = mustHex("A0000000871002FF49FF0589")
)

// CentralSD returns the AID of the central TSM's SD for a configuration:
// the ISD in Embedded (DESIGN.md 1: the central SD is the root there),
// CentralSDAID otherwise.
func CentralSD(cfg Config) []byte {
	if cfg == Embedded {
		return clone(ISDAID)
	}
	return clone(CentralSDAID)
}

// Key version numbers the card factory uses (GPC leaves them free, 11.1.8).
const (
	// KVNIssuer is the KVN of the SCP03 key sets of issuer SDs and of
	// pre-issued SP SDs.
	KVNIssuer byte = 0x30
	// KVNDAP is the KVN of an SD's AES DAP verification key (id 01).
	KVNDAP byte = 0x73
	// KVNToken is the KVN of the AES token verification key (id 01).
	KVNToken byte = 0x74
	// KVNReceipt is the KVN of the AES receipt generation key (id 01).
	KVNReceipt byte = 0x75
)

// Diversification constants: the k byte of the kdf3 derivation
// (gp-card.md 3.2). 01-03 are the GPPro values; 10-12 are ours, for the
// Appendix C keys of the issuer's SDs.
const (
	// DivENC diversifies Key-ENC.
	DivENC byte = 0x01
	// DivMAC diversifies Key-MAC.
	DivMAC byte = 0x02
	// DivDEK diversifies Key-DEK.
	DivDEK byte = 0x03
	// DivDAP diversifies an SD's AES DAP verification key.
	DivDAP byte = 0x10
	// DivToken diversifies the AES token verification key.
	DivToken byte = 0x11
	// DivReceipt diversifies the AES receipt generation key.
	DivReceipt byte = 0x12
)

// KDDFromCIN returns the card's key diversification data: the CIN left-padded
// with 00 to 10 bytes, or its last 10 bytes when longer. It is what every
// issuer SD of the card returns in INITIALIZE UPDATE unless SDKDD says
// otherwise.
func KDDFromCIN(cin []byte) []byte {
	kdd := make([]byte, 10)
	if len(cin) >= 10 {
		copy(kdd, cin[len(cin)-10:])
	} else {
		copy(kdd[10-len(cin):], cin)
	}
	return kdd
}

// SDKDD returns the KDD of an issuer SD: the card KDD for the ISD and the
// central SD (DESIGN.md 6: both are diversified from the issuer master key
// over the card's KDD), and for the other issuer SDs (MNO, third-party,
// DAP/MDPH, CASD, DM SP SD) the first 10 bytes of SHA-256(card KDD || AID),
// so that each has distinct keys. Hosts need not recompute it: the KDD comes
// back in the INITIALIZE UPDATE response.
func SDKDD(cardKDD, aid []byte) []byte {
	if aidEq(aid, ISDAID) || aidEq(aid, CentralSDAID) {
		return clone(cardKDD)
	}
	h := sha256.Sum256(append(clone(cardKDD), aid...))
	return h[:10]
}

// kdf3 is the GPPro "kdf3" diversification template (gp-card.md 3.2):
// AES-CMAC(master, i || 00 00 00 || k || 00 || KDD) for i = 1, 2, ..., cut
// to the master key's length, i.e. the NIST SP 800-108 counter-mode KDF with
// an 8-bit counter before the fixed input. gpcrypto.KDF3 is the same
// template but accepts only k = 01-03 (ENC, MAC, DEK) and 10-byte KDDs; the
// card also diversifies its Appendix C keys (k = 10-12: DivDAP, DivToken,
// DivReceipt) and DeriveKey takes any k, so the template runs on
// gpcrypto.CounterKDF here (crosscheck_test.go pins it to gpcrypto.KDF3).
func kdf3(master []byte, k byte, kdd []byte) ([]byte, error) {
	fixed := append([]byte{0, 0, 0, k, 0}, kdd...)
	return gpcrypto.CounterKDF(master, 8*len(master), gpcrypto.KDFParams{
		Location: gpcrypto.CounterBeforeFixed, CounterBits: 8, After: fixed})
}

// DeriveKey diversifies an AES master key (16, 24 or 32 bytes) with the
// kdf3 scheme for diversification constant k over kdd.
func DeriveKey(master []byte, k byte, kdd []byte) ([]byte, error) { return kdf3(master, k, kdd) }

// DeriveSCP03Keys returns the ENC, MAC and DEK keys kdf3-diversified from
// master over kdd, in that order.
func DeriveSCP03Keys(master, kdd []byte) (enc, mac, dek []byte, err error) {
	if enc, err = kdf3(master, DivENC, kdd); err != nil {
		return nil, nil, nil, err
	}
	if mac, err = kdf3(master, DivMAC, kdd); err != nil {
		return nil, nil, nil, err
	}
	if dek, err = kdf3(master, DivDEK, kdd); err != nil {
		return nil, nil, nil, err
	}
	return enc, mac, dek, nil
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		// Only reached with a malformed literal in this file; init-time.
		return nil
	}
	return b
}
