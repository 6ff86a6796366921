package card

import (
	"bytes"
	"encoding/hex"
	"strings"
)

// Config names an SE configuration of DESIGN.md section 1 (patent Fig. 5-8).
type Config string

// The four SE configurations.
const (
	// Embedded is an embedded SE whose central SD is the ISD (Fig. 5).
	Embedded Config = "embedded"
	// UICC is a UICC with an ISD, the central SD and the MNO SD (Fig. 6).
	UICC Config = "uicc"
	// Embedded3P is an embedded SE shared with a third-party TSM (Fig. 7).
	Embedded3P Config = "embedded-3p"
	// UICC3P is a UICC shared with a third-party TSM (Fig. 8).
	UICC3P Config = "uicc-3p"
)

// Valid reports whether c is one of the four configurations.
func (c Config) Valid() bool {
	switch c {
	case Embedded, UICC, Embedded3P, UICC3P:
		return true
	}
	return false
}

// Kind classifies a registry entry (GPC 5.1, 6.5).
type Kind int

// Registry entry kinds.
const (
	// KindISD is the Issuer Security Domain.
	KindISD Kind = iota + 1
	// KindSD is a Supplementary Security Domain.
	KindSD
	// KindApp is an application instance that is not a Security Domain.
	KindApp
	// KindELF is an Executable Load File.
	KindELF
)

// String implements fmt.Stringer.
func (k Kind) String() string {
	switch k {
	case KindISD:
		return "ISD"
	case KindSD:
		return "SD"
	case KindApp:
		return "App"
	case KindELF:
		return "ELF"
	}
	return "unknown"
}

// Life-cycle state bytes (GPC Tables 11-3 to 11-6).
const (
	// LCLoaded is the only ELF state.
	LCLoaded byte = 0x01
	// LCInstalled is INSTALLED (applications and SDs).
	LCInstalled byte = 0x03
	// LCSelectable is SELECTABLE (applications and SDs).
	LCSelectable byte = 0x07
	// LCPersonalized is the SD state PERSONALIZED.
	LCPersonalized byte = 0x0F
	// LCLocked is the LOCKED bit (b8) set on top of the previous state.
	LCLocked byte = 0x80

	// CardOPReady is the card state OP_READY.
	CardOPReady byte = 0x01
	// CardInitialized is the card state INITIALIZED.
	CardInitialized byte = 0x07
	// CardSecured is the card state SECURED.
	CardSecured byte = 0x0F
	// CardLocked is the card state CARD_LOCKED.
	CardLocked byte = 0x7F
	// CardTerminated is the card state TERMINATED.
	CardTerminated byte = 0xFF
)

// Privileges is the 3-byte privilege field of GPC Tables 11-7 to 11-9.
type Privileges [3]byte

// Privilege bits, as (byte index, mask); the multi-bit values (DAP, DM,
// Mandated DAP) include the Security Domain bit as the tables require.
var (
	// PrivSecurityDomain is Security Domain (privilege 0).
	PrivSecurityDomain = Privileges{0x80, 0, 0}
	// PrivDAPVerification is DAP Verification (1).
	PrivDAPVerification = Privileges{0xC0, 0, 0}
	// PrivDelegatedManagement is Delegated Management (2).
	PrivDelegatedManagement = Privileges{0xA0, 0, 0}
	// PrivCardLock is Card Lock (3).
	PrivCardLock = Privileges{0x10, 0, 0}
	// PrivCardTerminate is Card Terminate (4).
	PrivCardTerminate = Privileges{0x08, 0, 0}
	// PrivCardReset is Card Reset (5).
	PrivCardReset = Privileges{0x04, 0, 0}
	// PrivCVMManagement is CVM Management (6).
	PrivCVMManagement = Privileges{0x02, 0, 0}
	// PrivMandatedDAP is Mandated DAP Verification (7).
	PrivMandatedDAP = Privileges{0xC1, 0, 0}
	// PrivTrustedPath is Trusted Path (8).
	PrivTrustedPath = Privileges{0, 0x80, 0}
	// PrivAuthorizedManagement is Authorized Management (9).
	PrivAuthorizedManagement = Privileges{0, 0x40, 0}
	// PrivTokenVerification is Token Verification (10).
	PrivTokenVerification = Privileges{0, 0x20, 0}
	// PrivGlobalDelete is Global Delete (11).
	PrivGlobalDelete = Privileges{0, 0x10, 0}
	// PrivGlobalLock is Global Lock (12).
	PrivGlobalLock = Privileges{0, 0x08, 0}
	// PrivGlobalRegistry is Global Registry (13).
	PrivGlobalRegistry = Privileges{0, 0x04, 0}
	// PrivFinalApplication is Final Application (14).
	PrivFinalApplication = Privileges{0, 0x02, 0}
	// PrivGlobalService is Global Service (15).
	PrivGlobalService = Privileges{0, 0x01, 0}
	// PrivReceiptGeneration is Receipt Generation (16).
	PrivReceiptGeneration = Privileges{0, 0, 0x80}
	// PrivCipheredLoadFileBlock is Ciphered Load File Data Block (17).
	PrivCipheredLoadFileBlock = Privileges{0, 0, 0x40}
	// PrivContactlessActivation is Contactless Activation (18).
	PrivContactlessActivation = Privileges{0, 0, 0x20}
	// PrivContactlessSelfAct is Contactless Self-Activation (19).
	PrivContactlessSelfAct = Privileges{0, 0, 0x10}
)

// Has reports whether every bit of q is set in p.
func (p Privileges) Has(q Privileges) bool {
	for i := range p {
		if p[i]&q[i] != q[i] {
			return false
		}
	}
	return true
}

// Or returns the union of p and the given privileges.
func (p Privileges) Or(qs ...Privileges) Privileges {
	for _, q := range qs {
		for i := range p {
			p[i] |= q[i]
		}
	}
	return p
}

// String returns the privileges as 6 hex digits.
func (p Privileges) String() string { return strings.ToUpper(hex.EncodeToString(p[:])) }

// Key types (GPC Table 11-16).
const (
	// KeyTypeDES is a DES key (3DES double length for SCP02).
	KeyTypeDES byte = 0x80
	// KeyTypeAES is an AES key.
	KeyTypeAES byte = 0x88
)

// Key is one key of a Security Domain (GPC 7.5.1). Its Value is secret: it is
// never logged and never appears in an error.
type Key struct {
	ID    byte   `json:"id"`
	Type  byte   `json:"type"`
	Value []byte `json:"value"`
}

// KeySet is the group of keys sharing a Key Version Number, with the
// sequence counter the secure channel protocols attach to it (Amd D 6.2.2.1:
// one 3-byte counter per key set; GPC E.4.1: 2 bytes for SCP02).
type KeySet struct {
	KVN  byte   `json:"kvn"`
	Keys []Key  `json:"keys"`
	Seq  uint32 `json:"seq"`
}

type keySet = KeySet

func (ks *KeySet) key(id byte) *Key {
	for i := range ks.Keys {
		if ks.Keys[i].ID == id {
			return &ks.Keys[i]
		}
	}
	return nil
}

// scp returns 3 for an AES key set with ENC/MAC/DEK (ids 1-3), 2 for a DES
// one, 0 when the key set cannot open a secure channel.
func (ks *KeySet) scp() byte {
	e, m, d := ks.key(1), ks.key(2), ks.key(3)
	if e == nil || m == nil || d == nil {
		return 0
	}
	switch {
	case e.Type == KeyTypeAES && m.Type == KeyTypeAES && d.Type == KeyTypeAES:
		return 3
	case e.Type == KeyTypeDES && m.Type == KeyTypeDES && d.Type == KeyTypeDES:
		return 2
	}
	return 0
}

// SCP03Keys returns an AES key set with ENC, MAC and DEK as key ids 1, 2, 3.
func SCP03Keys(kvn byte, enc, mac, dek []byte) KeySet {
	return KeySet{KVN: kvn, Keys: []Key{
		{ID: 1, Type: KeyTypeAES, Value: clone(enc)},
		{ID: 2, Type: KeyTypeAES, Value: clone(mac)},
		{ID: 3, Type: KeyTypeAES, Value: clone(dek)},
	}}
}

// SCP02Keys returns a DES key set with ENC, MAC and DEK as key ids 1, 2, 3.
func SCP02Keys(kvn byte, enc, mac, dek []byte) KeySet {
	return KeySet{KVN: kvn, Keys: []Key{
		{ID: 1, Type: KeyTypeDES, Value: clone(enc)},
		{ID: 2, Type: KeyTypeDES, Value: clone(mac)},
		{ID: 3, Type: KeyTypeDES, Value: clone(dek)},
	}}
}

// persoRecord is one STORE DATA block an application or SD received.
type persoRecord struct {
	P1   byte   `json:"p1"`
	Data []byte `json:"data"`
}

// entry is one registry entry (GPC 5.1.2, gp-card.md 8): an SD, an
// application or an ELF.
type entry struct {
	AID        []byte     `json:"aid"`
	Kind       Kind       `json:"kind"`
	LifeCycle  byte       `json:"lc"`
	Privileges Privileges `json:"priv,omitempty"`
	// SD is the associated Security Domain (owner); nil for the ISD.
	SD []byte `json:"sd,omitempty"`
	// ELF and Module name the load file and module an instance came from.
	ELF    []byte `json:"elf,omitempty"`
	Module []byte `json:"module,omitempty"`
	// Modules are the Executable Modules of an ELF.
	Modules [][]byte `json:"modules,omitempty"`
	// OpaqueModules marks an ELF whose LFDB was not a parsable CAP file: any
	// module AID is accepted by INSTALL [for install].
	OpaqueModules bool   `json:"opaqueModules,omitempty"`
	Version       []byte `json:"version,omitempty"`
	// ImplicitSelection lists the CF parameters (GPC 11.5.2.3.7).
	ImplicitSelection []byte `json:"implicit,omitempty"`
	InstallParams     []byte `json:"installParams,omitempty"`
	ProviderID        []byte `json:"providerId,omitempty"`
	// Security Domain data.
	KeySets []KeySet `json:"keySets,omitempty"`
	KDD     []byte   `json:"kdd,omitempty"`
	SCP02I  byte     `json:"scp02i,omitempty"`
	SCP03I  byte     `json:"scp03i,omitempty"`
	// Data holds BER-TLV data objects stored with STORE DATA or at
	// manufacture (42, 45, 5F50, ...), keyed by tag hex.
	Data map[string][]byte `json:"data,omitempty"`
	// Perso is the personalization data an application received, in order.
	Perso []persoRecord `json:"perso,omitempty"`
	// ConfirmationCounter is the Receipt Generation counter (GPC C.5).
	ConfirmationCounter uint16 `json:"confCounter,omitempty"`
}

func (e *entry) isSD() bool { return e.Kind == KindISD || e.Kind == KindSD }

func (e *entry) keySet(kvn byte) *KeySet {
	for i := range e.KeySets {
		if e.KeySets[i].KVN == kvn {
			return &e.KeySets[i]
		}
	}
	return nil
}

func (e *entry) locked() bool { return e.LifeCycle&LCLocked != 0 && e.Kind != KindELF }

// selectable reports whether SELECT may pick the entry (GPC 5.2, 5.3):
// SELECTABLE or later states, not LOCKED.
func (e *entry) selectable() bool {
	if e.Kind == KindELF || e.locked() {
		return false
	}
	if e.Kind == KindISD {
		return true
	}
	return e.LifeCycle&0x07 == 0x07
}

// RegistryEntry is the read-only view of one registry entry that tests and
// the simulator service use.
type RegistryEntry struct {
	AID        []byte
	Kind       Kind
	LifeCycle  byte
	Privileges Privileges
	// SD is the associated Security Domain (nil for the ISD).
	SD []byte
	// ELF and Module are the origin of an application instance or SD.
	ELF, Module []byte
	// Modules lists the Executable Modules of an ELF.
	Modules [][]byte
	// KeyVersions lists the KVNs of an SD's key sets (never the key values).
	KeyVersions []byte
	// PersoBlocks counts STORE DATA blocks received as personalization data.
	PersoBlocks int
}

func aidEq(a, b []byte) bool { return bytes.Equal(a, b) }
