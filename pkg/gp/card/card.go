package card

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// PreIssuedSD describes an SP Security Domain created at issuance, before
// pre-personalization exists (the demo uses it). Its SCP03 keys are
// kdf3-diversified from MasterKey over the card KDD (KDDFromCIN).
type PreIssuedSD struct {
	// AID of the SP SD (5-16 bytes).
	AID []byte
	// MasterKey is the SP's AES master key (16, 24 or 32 bytes).
	MasterKey []byte
	// KVN of the key set; 0 means KVNIssuer (30).
	KVN byte
	// Privileges; the zero value means the configuration's default SP SD
	// privileges (Security Domain, plus DAP Verification in Embedded).
	Privileges Privileges
}

// ManufactureSpec describes a card to build.
type ManufactureSpec struct {
	// CIN is the card image number (= SE id), 8-10 bytes.
	CIN []byte
	// IIN is the issuer identification number (tag 42 of the ISD).
	IIN []byte
	// Config selects the content of DESIGN.md section 1.
	Config Config
	// IssuerMasterKey (AES-128/192/256) diversifies, with kdf3 over the card
	// KDD (KDDFromCIN), the keys of the ISD and the central SD; the other
	// issuer SDs use SDKDD.
	IssuerMasterKey []byte
	// GenericELF and GenericModule override GenericELFAID and GenericModuleAID.
	GenericELF, GenericModule []byte
	// PreIssuedSPDomains are SP SDs created at issuance under the central SD.
	PreIssuedSPDomains []PreIssuedSD
	// Rand is the source of random card challenges; nil means crypto/rand.
	Rand io.Reader
}

// Card is a simulated GlobalPlatform card. It is safe for concurrent use;
// APDUs are processed one at a time.
type Card struct {
	mu        sync.Mutex
	st        *state
	rand      io.Reader
	challenge io.Reader
	// lastPlain is the last unwrapped command (tests compare it with the
	// published plain commands).
	lastPlain []byte
}

// state is everything MarshalBinary persists.
type state struct {
	Version   int      `json:"v"`
	CIN       []byte   `json:"cin"`
	IIN       []byte   `json:"iin"`
	Config    Config   `json:"config"`
	KDD       []byte   `json:"kdd"`
	LifeCycle byte     `json:"lifeCycle"`
	Entries   []*entry `json:"registry"`
	// Channels 0-3; nil = closed. Channel 0 is always open.
	Channels [4]*channel `json:"channels"`
	Exec     uint64      `json:"exec"`
	CPLC     []byte      `json:"cplc"`
}

// stateVersion 2: secure channel sessions are scp03/scp02.CardSession
// values (version 1 had the card's own session layout).
const stateVersion = 2

var (
	errBadSpec = errors.New("card: invalid manufacture spec")
)

// Manufacture builds a card for spec: the ISD, the SDs and applications of
// the configuration with their privileges and keys, the SSD package and the
// generic payment ELF (loaded, not instantiated) under the central SD. The
// card leaves the factory SECURED with the ISD selected on channel 0.
func Manufacture(spec ManufactureSpec) (*Card, error) {
	if !spec.Config.Valid() {
		return nil, fmt.Errorf("%w: unknown configuration %q", errBadSpec, spec.Config)
	}
	if len(spec.CIN) < 8 || len(spec.CIN) > 10 {
		return nil, fmt.Errorf("%w: CIN must be 8-10 bytes, got %d", errBadSpec, len(spec.CIN))
	}
	switch len(spec.IssuerMasterKey) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: issuer master key must be 16, 24 or 32 bytes", errBadSpec)
	}
	elf, mod := spec.GenericELF, spec.GenericModule
	if elf == nil {
		elf = GenericELFAID
	}
	if mod == nil {
		mod = GenericModuleAID
	}
	if !validAID(elf) || !validAID(mod) {
		return nil, fmt.Errorf("%w: generic ELF/module AID must be 5-16 bytes", errBadSpec)
	}
	st := &state{Version: stateVersion, CIN: clone(spec.CIN), IIN: clone(spec.IIN), Config: spec.Config,
		KDD: KDDFromCIN(spec.CIN), LifeCycle: CardSecured}
	if st.IIN == nil {
		st.IIN = []byte{0x42, 0x00, 0x01}
	}
	st.CPLC = makeCPLC(spec.CIN)
	f := factory{st: st, master: spec.IssuerMasterKey}

	central := CentralSD(spec.Config)
	isdPriv := Privileges{0x9E, 0xFE, 0x80} // typical ISD (gp-card.md 2.8)
	if spec.Config == Embedded {
		// DESIGN.md 1, Fig. 5: the central SD is the root and has exactly
		// Security Domain, Card Lock, Card Terminate, CVM and AM.
		isdPriv = PrivSecurityDomain.Or(PrivCardLock, PrivCardTerminate, PrivCVMManagement, PrivAuthorizedManagement)
	}
	if err := f.sd(ISDAID, nil, KindISD, isdPriv, true); err != nil {
		return nil, err
	}
	f.elf(SSDPackageAID, ISDAID, SSDModuleAID)
	am := PrivSecurityDomain.Or(PrivAuthorizedManagement)
	if spec.Config != Embedded {
		if err := f.sd(CentralSDAID, ISDAID, KindSD, am, true); err != nil {
			return nil, err
		}
	}
	if spec.Config == UICC || spec.Config == UICC3P {
		if err := f.sd(MNOSDAID, ISDAID, KindSD, am, true); err != nil {
			return nil, err
		}
		f.elf(TelecomELFAID, MNOSDAID, TelecomModuleAID)
		f.app(TelecomAppletAID, MNOSDAID, TelecomELFAID, TelecomModuleAID)
	}
	if spec.Config == Embedded3P || spec.Config == UICC3P {
		if err := f.sd(ThirdPartySDAID, ISDAID, KindSD, am, true); err != nil {
			return nil, err
		}
		if err := f.sd(DMSPSDAID, central, KindSD, PrivDelegatedManagement, true); err != nil {
			return nil, err
		}
		dapAID, dapPriv := MandatedDAPSDAID, PrivMandatedDAP
		if spec.Config == UICC3P {
			dapAID, dapPriv = MDPHSDAID, PrivMandatedDAP.Or(PrivTokenVerification, PrivReceiptGeneration)
		}
		if err := f.sd(dapAID, ISDAID, KindSD, dapPriv, true); err != nil {
			return nil, err
		}
		if err := f.sd(CASDAID, ISDAID, KindSD, PrivSecurityDomain, true); err != nil {
			return nil, err
		}
	}
	f.elf(elf, central, mod)
	for _, p := range spec.PreIssuedSPDomains {
		if err := f.preIssued(p, central); err != nil {
			return nil, err
		}
	}
	if f.err != nil {
		return nil, f.err
	}
	st.Channels[0] = &channel{Selected: clone(ISDAID)}
	c := &Card{st: st, rand: spec.Rand}
	if c.rand == nil {
		c.rand = rand.Reader
	}
	return c, nil
}

type factory struct {
	st     *state
	master []byte
	err    error
}

func (f *factory) add(e *entry) {
	if f.st.find(e.AID) != nil {
		f.err = fmt.Errorf("%w: duplicate AID %X", errBadSpec, e.AID)
		return
	}
	f.st.Entries = append(f.st.Entries, e)
}

// sd creates an issuer SD PERSONALIZED with an SCP03 key set (KVN 30) and,
// depending on its privileges, the Appendix C keys (DAP, token, receipt).
func (f *factory) sd(aid, parent []byte, kind Kind, priv Privileges, keys bool) error {
	kdd := SDKDD(f.st.KDD, aid)
	e := &entry{AID: clone(aid), Kind: kind, LifeCycle: LCPersonalized, Privileges: priv, SD: clone(parent),
		KDD: kdd, SCP03I: 0x70, SCP02I: 0x55, ELF: clone(SSDPackageAID), Module: clone(SSDModuleAID)}
	if kind == KindISD {
		e.LifeCycle = CardSecured
		e.ELF, e.Module = nil, nil
	}
	if keys {
		enc, mac, dek, err := DeriveSCP03Keys(f.master, kdd)
		if err != nil {
			return err
		}
		e.KeySets = append(e.KeySets, SCP03Keys(KVNIssuer, enc, mac, dek))
		extra := []struct {
			need Privileges
			kvn  byte
			div  byte
		}{{PrivDAPVerification, KVNDAP, DivDAP}, {PrivTokenVerification, KVNToken, DivToken}, {PrivReceiptGeneration, KVNReceipt, DivReceipt}}
		for _, x := range extra {
			if !priv.Has(x.need) {
				continue
			}
			k, err := kdf3(f.master, x.div, kdd)
			if err != nil {
				return err
			}
			e.KeySets = append(e.KeySets, KeySet{KVN: x.kvn, Keys: []Key{{ID: 1, Type: KeyTypeAES, Value: k}}})
		}
	}
	f.add(e)
	return nil
}

func (f *factory) elf(aid, sd []byte, modules ...[]byte) {
	e := &entry{AID: clone(aid), Kind: KindELF, LifeCycle: LCLoaded, SD: clone(sd), Version: []byte{1, 0}}
	for _, m := range modules {
		e.Modules = append(e.Modules, clone(m))
	}
	f.add(e)
}

func (f *factory) app(aid, sd, elf, module []byte) {
	f.add(&entry{AID: clone(aid), Kind: KindApp, LifeCycle: LCSelectable, SD: clone(sd), ELF: clone(elf), Module: clone(module)})
}

func (f *factory) preIssued(p PreIssuedSD, central []byte) error {
	if !validAID(p.AID) {
		return fmt.Errorf("%w: pre-issued SD AID must be 5-16 bytes", errBadSpec)
	}
	kvn := p.KVN
	if kvn == 0 {
		kvn = KVNIssuer
	}
	if kvn > 0x7F {
		return fmt.Errorf("%w: KVN must be 01-7F", errBadSpec)
	}
	priv := p.Privileges
	if priv == (Privileges{}) {
		priv = PrivSecurityDomain
		if f.st.Config == Embedded {
			priv = PrivDAPVerification // DESIGN.md 1: SP SDs with DAP Verification
		}
	}
	if !priv.Has(PrivSecurityDomain) {
		return fmt.Errorf("%w: pre-issued SD privileges lack Security Domain", errBadSpec)
	}
	enc, mac, dek, err := DeriveSCP03Keys(p.MasterKey, f.st.KDD)
	if err != nil {
		return fmt.Errorf("%w: SP master key must be 16, 24 or 32 bytes", errBadSpec)
	}
	f.add(&entry{AID: clone(p.AID), Kind: KindSD, LifeCycle: LCPersonalized, Privileges: priv, SD: clone(central),
		ELF: clone(SSDPackageAID), Module: clone(SSDModuleAID), KDD: clone(f.st.KDD), SCP03I: 0x70, SCP02I: 0x55,
		KeySets: []KeySet{SCP03Keys(kvn, enc, mac, dek)}})
	return nil
}

// makeCPLC builds the 42-byte CPLC (gp-card.md 2.7) with the CIN's last 4
// bytes as IC serial number.
func makeCPLC(cin []byte) []byte {
	c := make([]byte, 42)
	copy(c[0:], []byte{0x47, 0x90}) // IC fabricator
	copy(c[2:], []byte{0x50, 0x40}) // IC type
	copy(c[4:], []byte{0x47, 0x91}) // OS id
	copy(c[6:], []byte{0x62, 0x01}) // OS release date (BCD YDDD)
	copy(c[8:], []byte{0x23, 0x01}) // OS release level
	copy(c[10:], []byte{0x62, 0x01})
	copy(c[12:], cin[len(cin)-4:]) // IC serial number
	return c
}

func validAID(a []byte) bool { return len(a) >= 5 && len(a) <= 16 }

func (st *state) find(aid []byte) *entry {
	for _, e := range st.Entries {
		if aidEq(e.AID, aid) {
			return e
		}
	}
	return nil
}

func (st *state) isd() *entry {
	for _, e := range st.Entries {
		if e.Kind == KindISD {
			return e
		}
	}
	return nil
}

// WithChallengeSource makes the card read its random card challenges (SCP02
// i=15, SCP03 i=00/60) from r, so that tests can replay published sessions.
// Pass nil to go back to the manufacture Rand. It returns c.
func (c *Card) WithChallengeSource(r io.Reader) *Card {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.challenge = r
	return c
}

// SetSequenceCounter sets the sequence counter of key set kvn of the SD aid
// (test hook: replay of published sessions; the card increments an SCP03
// pseudo-random counter before answering INITIALIZE UPDATE).
func (c *Card) SetSequenceCounter(sdAID []byte, kvn byte, seq uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.st.find(sdAID)
	if e == nil || !e.isSD() {
		return errors.New("card: no such security domain")
	}
	ks := e.keySet(kvn)
	if ks == nil {
		return errors.New("card: no such key set")
	}
	ks.Seq = seq
	return nil
}

// SetKDD sets the key diversification data an SD returns in INITIALIZE
// UPDATE (test hook).
func (c *Card) SetKDD(sdAID, kdd []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.st.find(sdAID)
	if e == nil || !e.isSD() || len(kdd) != 10 {
		return errors.New("card: no such security domain or KDD not 10 bytes")
	}
	e.KDD = clone(kdd)
	return nil
}

// SetSCPParameter sets the i parameter an SD uses for SCP03 (00, 10, 60,
// 70) or SCP02 (15, 55) (test hook and factory option).
func (c *Card) SetSCPParameter(sdAID []byte, scp, i byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.st.find(sdAID)
	if e == nil || !e.isSD() {
		return errors.New("card: no such security domain")
	}
	switch {
	case scp == 3 && (i == 0x00 || i == 0x10 || i == 0x60 || i == 0x70):
		e.SCP03I = i
	case scp == 2 && (i == 0x15 || i == 0x55):
		e.SCP02I = i
	default:
		return errors.New("card: unsupported secure channel parameter")
	}
	return nil
}

// PutKeySet adds or replaces (same KVN) a key set of an SD directly, as a
// personalization bureau would (factory/test hook, no APDU checks).
func (c *Card) PutKeySet(sdAID []byte, ks KeySet) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.st.find(sdAID)
	if e == nil || !e.isSD() {
		return errors.New("card: no such security domain")
	}
	ks.Keys = append([]Key(nil), ks.Keys...)
	for i := range ks.Keys {
		ks.Keys[i].Value = clone(ks.Keys[i].Value)
	}
	if old := e.keySet(ks.KVN); old != nil {
		*old = ks
		return nil
	}
	e.KeySets = append(e.KeySets, ks)
	return nil
}

// AddSecurityDomain creates a PERSONALIZED supplementary SD under parent
// with the given privileges, KDD and key sets (factory/test hook: replaying
// published sessions needs SDs with the AIDs of the cards they came from).
func (c *Card) AddSecurityDomain(aid, parent []byte, priv Privileges, kdd []byte, keySets ...KeySet) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !validAID(aid) || c.st.find(aid) != nil {
		return errors.New("card: invalid or duplicate AID")
	}
	if p := c.st.find(parent); p == nil || !p.isSD() {
		return errors.New("card: parent is not a security domain")
	}
	if len(kdd) != 10 {
		kdd = clone(c.st.KDD)
	}
	e := &entry{AID: clone(aid), Kind: KindSD, LifeCycle: LCPersonalized, Privileges: priv.Or(PrivSecurityDomain),
		SD: clone(parent), KDD: clone(kdd), SCP03I: 0x70, SCP02I: 0x55,
		ELF: clone(SSDPackageAID), Module: clone(SSDModuleAID)}
	for _, ks := range keySets {
		ks.Keys = append([]Key(nil), ks.Keys...)
		for i := range ks.Keys {
			ks.Keys[i].Value = clone(ks.Keys[i].Value)
		}
		e.KeySets = append(e.KeySets, ks)
	}
	c.st.Entries = append(c.st.Entries, e)
	return nil
}

// SetData stores a BER-TLV data object (tag as hex, e.g. "42", "5A") in an
// SD, as STORE DATA would (factory/test hook).
func (c *Card) SetData(sdAID []byte, tag string, value []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.st.find(sdAID)
	if e == nil || !e.isSD() {
		return errors.New("card: no such security domain")
	}
	if e.Data == nil {
		e.Data = map[string][]byte{}
	}
	e.Data[tag] = clone(value)
	return nil
}

// CIN returns the card image number.
func (c *Card) CIN() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return clone(c.st.CIN)
}

// Config returns the card's configuration.
func (c *Card) Config() Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Config
}

// KDD returns the card's key diversification data (KDDFromCIN of its CIN).
func (c *Card) KDD() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return clone(c.st.KDD)
}

// LifeCycle returns the card life-cycle state (GPC Table 11-6).
func (c *Card) LifeCycle() byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.LifeCycle
}

// ExecutionCount returns the number of APDUs the card has processed
// (Transmit calls, persisted with the state).
func (c *Card) ExecutionCount() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Exec
}

// Registry returns a copy of the registry, in registry order (GET STATUS
// order). Key values are not included.
func (c *Card) Registry() []RegistryEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]RegistryEntry, 0, len(c.st.Entries))
	for _, e := range c.st.Entries {
		r := RegistryEntry{AID: clone(e.AID), Kind: e.Kind, LifeCycle: e.LifeCycle, Privileges: e.Privileges,
			SD: clone(e.SD), ELF: clone(e.ELF), Module: clone(e.Module), PersoBlocks: len(e.Perso)}
		if e.Kind == KindISD {
			r.LifeCycle = c.st.LifeCycle
		}
		for _, m := range e.Modules {
			r.Modules = append(r.Modules, clone(m))
		}
		for _, ks := range e.KeySets {
			r.KeyVersions = append(r.KeyVersions, ks.KVN)
		}
		out = append(out, r)
	}
	return out
}

// PersonalizationData returns the STORE DATA blocks an application or SD
// received as personalization data, in order (tests and the service's
// content view). It returns nil for an unknown AID.
func (c *Card) PersonalizationData(aid []byte) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.st.find(aid)
	if e == nil {
		return nil
	}
	out := make([][]byte, 0, len(e.Perso))
	for _, p := range e.Perso {
		out = append(out, clone(p.Data))
	}
	return out
}

// MarshalBinary encodes the whole card state (registry, keys, counters, open
// channels, selections and secure-channel sessions) as JSON. The output
// contains key values: store it encrypted.
func (c *Card) MarshalBinary() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return json.Marshal(c.st)
}

// UnmarshalBinary restores a state written by MarshalBinary. The challenge
// source and Rand are not part of the state: the card uses crypto/rand
// unless WithChallengeSource is called again.
func (c *Card) UnmarshalBinary(b []byte) error {
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("card: decode state: %w", err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("card: unsupported state version %d", st.Version)
	}
	if st.isd() == nil || len(st.KDD) != 10 {
		return errors.New("card: state has no ISD or KDD")
	}
	if st.Channels[0] == nil {
		st.Channels[0] = &channel{Selected: clone(ISDAID)}
	}
	for _, ch := range st.Channels {
		if ch != nil && ch.Session != nil && !ch.Session.valid() {
			// A malformed session ends, as after a reset (GPC 10.2.3).
			ch.Session = nil
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st = &st
	if c.rand == nil {
		c.rand = rand.Reader
	}
	return nil
}

// Restore returns a new card from a MarshalBinary state.
func Restore(b []byte) (*Card, error) {
	c := &Card{rand: rand.Reader}
	if err := c.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return c, nil
}
