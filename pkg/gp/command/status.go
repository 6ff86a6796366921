package command

import (
	"fmt"

	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// Privilege numbers (GPC Table 6-1; byte coding Tables 11-7 to 11-9).
type Privilege uint8

// The privileges.
const (
	PrivSecurityDomain Privilege = iota
	PrivDAPVerification
	PrivDelegatedManagement
	PrivCardLock
	PrivCardTerminate
	PrivCardReset
	PrivCVMManagement
	PrivMandatedDAPVerification
	PrivTrustedPath
	PrivAuthorizedManagement
	PrivTokenVerification
	PrivGlobalDelete
	PrivGlobalLock
	PrivGlobalRegistry
	PrivFinalApplication
	PrivGlobalService
	PrivReceiptGeneration
	PrivCipheredLoadFileDataBlock
	PrivContactlessActivation
	PrivContactlessSelfActivation
	numPrivileges
)

// privBits gives byte index and mask; the SD-related privileges of byte 1
// include the Security Domain bit (b8) in their coding.
var privBits = [numPrivileges]struct {
	idx  int
	mask byte
}{
	{0, 0x80}, {0, 0xC0}, {0, 0xA0}, {0, 0x10}, {0, 0x08}, {0, 0x04}, {0, 0x02}, {0, 0xC1},
	{1, 0x80}, {1, 0x40}, {1, 0x20}, {1, 0x10}, {1, 0x08}, {1, 0x04}, {1, 0x02}, {1, 0x01},
	{2, 0x80}, {2, 0x40}, {2, 0x20}, {2, 0x10},
}

var privNames = [numPrivileges]string{
	"Security Domain", "DAP Verification", "Delegated Management", "Card Lock", "Card Terminate", "Card Reset",
	"CVM Management", "Mandated DAP Verification", "Trusted Path", "Authorized Management", "Token Verification",
	"Global Delete", "Global Lock", "Global Registry", "Final Application", "Global Service", "Receipt Generation",
	"Ciphered Load File Data Block", "Contactless Activation", "Contactless Self-Activation",
}

// String returns the privilege name.
func (p Privilege) String() string {
	if p < numPrivileges {
		return privNames[p]
	}
	return fmt.Sprintf("Privilege(%d)", uint8(p))
}

// Privileges is the 3-byte privileges field.
type Privileges [3]byte

// PrivilegesOf builds the 3-byte field from a list of privileges.
func PrivilegesOf(ps ...Privilege) Privileges {
	var out Privileges
	for _, p := range ps {
		if p < numPrivileges {
			b := privBits[p]
			out[b.idx] |= b.mask
		}
	}
	return out
}

// PrivilegesFromBytes reads a 1 or 3-byte privileges field (a 1-byte field
// leaves bytes 2 and 3 zero; the OPEN's defaults of GPC Table 6-2 are the
// caller's concern).
func PrivilegesFromBytes(b []byte) (Privileges, error) {
	var p Privileges
	if len(b) != 1 && len(b) != 3 {
		return p, fmt.Errorf("%w: privileges of %d bytes", ErrParam, len(b))
	}
	copy(p[:], b)
	return p, nil
}

// Has reports whether the privilege is set (for the composite codings all
// its bits must be set: DAP Verification is C0, Mandated DAP C1).
func (p Privileges) Has(x Privilege) bool {
	if x >= numPrivileges {
		return false
	}
	b := privBits[x]
	return p[b.idx]&b.mask == b.mask
}

// List returns the privileges set, in numbering order.
func (p Privileges) List() []Privilege {
	var out []Privilege
	for x := Privilege(0); x < numPrivileges; x++ {
		if p.Has(x) {
			out = append(out, x)
		}
	}
	return out
}

// Bytes returns the 3-byte field.
func (p Privileges) Bytes() []byte { return []byte{p[0], p[1], p[2]} }

// Life-cycle state codings (GPC Tables 11-3 to 11-6).
const (
	LCELFLoaded       byte = 0x01
	LCAppInstalled    byte = 0x03
	LCAppSelectable   byte = 0x07
	LCSDPersonalized  byte = 0x0F
	LCLockedBit       byte = 0x80
	LCCardOPReady     byte = 0x01
	LCCardInitialized byte = 0x07
	LCCardSecured     byte = 0x0F
	LCCardLocked      byte = 0x7F
	LCCardTerminated  byte = 0xFF
	LCAppSpecificMask byte = 0x78
)

// StatusEntry is one E3 entry of a GET STATUS response in the TLV format
// (GPC Tables 11-36, 11-37).
type StatusEntry struct {
	AID []byte
	// LifeCycle is the first byte of 9F70; LifeCycleRaw the whole value
	// (real cards send 1 or 2 bytes).
	LifeCycle    byte
	LifeCycleRaw []byte
	// Privileges (C5); HasPrivileges is false when C5 is absent (ELFs).
	Privileges    Privileges
	HasPrivileges bool
	// ELF is the Executable Load File AID (C4) of an application.
	ELF []byte
	// AssociatedSD is the AID of the associated security domain (CC).
	AssociatedSD []byte
	// Version is the ELF version number (CE).
	Version []byte
	// Modules are the Executable Module AIDs (84) of an ELF (P1=10).
	Modules [][]byte
	// ImplicitSelection are the implicit selection parameters (CF).
	ImplicitSelection [][]byte
	// Other holds the data objects the parser does not interpret (e.g. EA).
	Other []tlv.TLV
}

// Locked reports whether the life cycle has the LOCKED bit (b8) set on an
// application or SD entry (for the ISD, 7F and FF are card states instead).
func (e StatusEntry) Locked() bool { return e.LifeCycle&LCLockedBit != 0 }

// ParseStatusResponse parses the data of a GET STATUS response in the TLV
// format (P2 b2 = 1): a sequence of E3 entries. 9F70 may have 1 or 2 bytes;
// unknown tags are kept in Other.
func ParseStatusResponse(data []byte) ([]StatusEntry, error) {
	list, err := tlv.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResponse, err)
	}
	var out []StatusEntry
	for n, t := range list {
		if t.Tag != 0xE3 {
			return nil, fmt.Errorf("%w: entry %d has tag %X, want E3", ErrResponse, n+1, t.Tag)
		}
		kids, err := t.Children()
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: %v", ErrResponse, n+1, err)
		}
		var e StatusEntry
		for _, k := range kids {
			switch k.Tag {
			case 0x4F:
				e.AID = k.Value
			case 0x9F70:
				if len(k.Value) < 1 || len(k.Value) > 2 {
					return nil, fmt.Errorf("%w: entry %d: 9F70 of %d bytes", ErrResponse, n+1, len(k.Value))
				}
				e.LifeCycle, e.LifeCycleRaw = k.Value[0], k.Value
			case 0xC5:
				p, err := PrivilegesFromBytes(k.Value)
				if err != nil {
					return nil, fmt.Errorf("%w: entry %d: %v", ErrResponse, n+1, err)
				}
				e.Privileges, e.HasPrivileges = p, true
			case 0xC4:
				e.ELF = k.Value
			case 0xCC:
				e.AssociatedSD = k.Value
			case 0xCE:
				e.Version = k.Value
			case 0x84:
				e.Modules = append(e.Modules, k.Value)
			case 0xCF:
				e.ImplicitSelection = append(e.ImplicitSelection, k.Value)
			default:
				e.Other = append(e.Other, k)
			}
		}
		if e.AID == nil || e.LifeCycleRaw == nil {
			return nil, fmt.Errorf("%w: entry %d lacks 4F or 9F70", ErrResponse, n+1)
		}
		out = append(out, e)
	}
	return out, nil
}

// Encode returns the E3 entry as a card emits it: 4F, 9F70 (LifeCycleRaw, or
// the 1-byte form), C5 when HasPrivileges, CF, C4, CE, 84, CC, then Other.
func (e StatusEntry) Encode() []byte {
	lc := e.LifeCycleRaw
	if lc == nil {
		lc = []byte{e.LifeCycle}
	}
	parts := [][]byte{tlv.Encode(0x4F, e.AID), tlv.Encode(0x9F70, lc)}
	if e.HasPrivileges {
		parts = append(parts, tlv.Encode(0xC5, e.Privileges.Bytes()))
	}
	for _, c := range e.ImplicitSelection {
		parts = append(parts, tlv.Encode(0xCF, c))
	}
	if e.ELF != nil {
		parts = append(parts, tlv.Encode(0xC4, e.ELF))
	}
	if e.Version != nil {
		parts = append(parts, tlv.Encode(0xCE, e.Version))
	}
	for _, m := range e.Modules {
		parts = append(parts, tlv.Encode(0x84, m))
	}
	if e.AssociatedSD != nil {
		parts = append(parts, tlv.Encode(0xCC, e.AssociatedSD))
	}
	for _, o := range e.Other {
		parts = append(parts, o.Bytes())
	}
	return tlv.EncodeConstructed(0xE3, parts...)
}

// KeyInfo is one C0 entry of the Key Information Template (GET DATA E0).
type KeyInfo struct {
	ID      byte
	Version byte
	Type    byte
	Length  int
}

// KeyInformationTemplate encodes E0{C0 04 id kvn type len ...} in the basic
// format (1-byte key length).
func KeyInformationTemplate(keys []KeyInfo) []byte {
	var parts [][]byte
	for _, k := range keys {
		parts = append(parts, tlv.Encode(0xC0, []byte{k.ID, k.Version, k.Type, byte(k.Length)}))
	}
	return tlv.EncodeConstructed(0xE0, parts...)
}

// ParseKeyInformationTemplate parses the basic format of the E0 template
// (C0 values of 4 bytes; the extended format with FF types is rejected).
func ParseKeyInformationTemplate(data []byte) ([]KeyInfo, error) {
	list, err := tlv.Parse(data)
	if err != nil || len(list) != 1 || list[0].Tag != 0xE0 {
		return nil, fmt.Errorf("%w: not an E0 template", ErrResponse)
	}
	kids, err := list[0].Children()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResponse, err)
	}
	var out []KeyInfo
	for _, k := range kids {
		if k.Tag != 0xC0 || len(k.Value) != 4 {
			return nil, fmt.Errorf("%w: key information entry %X of %d bytes", ErrResponse, k.Tag, len(k.Value))
		}
		out = append(out, KeyInfo{ID: k.Value[0], Version: k.Value[1], Type: k.Value[2], Length: int(k.Value[3])})
	}
	return out, nil
}
