package card

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/command"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// Card content management: INSTALL (GPC 11.5), LOAD (11.6), DELETE (11.2),
// SET STATUS (11.10), with the privilege rules of GPC 9 and the Appendix C
// mechanisms (DAP, Delegated Management tokens and receipts).

// loadState is an ongoing load on a channel (INSTALL [for load] accepted,
// LOAD blocks expected).
type loadState struct {
	ELF    []byte `json:"elf"`
	SD     []byte `json:"sd"`
	LFDBH  []byte `json:"lfdbh,omitempty"`
	Next   int    `json:"next"`
	Data   []byte `json:"data,omitempty"`
	DM     bool   `json:"dm,omitempty"`
	Token  bool   `json:"token,omitempty"`
	Params []byte `json:"params,omitempty"`
	// Install holds the install part of INSTALL [for load, install and
	// make selectable], run after the last LOAD block.
	Install *installReq `json:"install,omitempty"`
}

type installReq struct {
	ELF, Module, Instance, Privileges, Params []byte
}

// maxLoadFile bounds a load file (memory of the simulated card).
const maxLoadFile = 128 * 1024

// lvFields reads the LV fields of INSTALL data (GPC 11.5.2.3; lengths are
// BER, gp-card.md 2.3) and the offsets where each field's length starts, so
// that the token data can be cut at the right place.
func lvFields(d []byte) (fields [][]byte, starts []int, ok bool) {
	for rest := d; len(rest) > 0; {
		starts = append(starts, len(d)-len(rest))
		v, next, err := tlv.ReadLV(rest)
		if err != nil {
			return nil, nil, false
		}
		fields = append(fields, v)
		rest = next
	}
	return fields, starts, true
}

// authority describes what the requesting SD may do in content management
// (GPC 9.1.3): the ISD and AM SDs act without a token; DM SDs need one.
type authority struct {
	dm bool
}

func (r *request) authorityFor() (authority, uint16) {
	sd := r.sd
	switch {
	case sd.Kind == KindISD, sd.Privileges.Has(PrivAuthorizedManagement):
		return authority{}, apdu.SWOK
	case sd.Privileges.Has(PrivDelegatedManagement):
		return authority{dm: true}, apdu.SWOK
	}
	return authority{}, apdu.SWConditionsNotSatisfied
}

// inScope reports whether e belongs to the requesting SD's sub-hierarchy.
func (r *request) inScope(e *entry) bool { return e != nil && r.st.inHierarchy(e, r.sd) }

// checkToken verifies a DM token or rejects a token that is not required
// (GPC C.4): dtbs is P1 || P2 || Lc || data without the token.
func (r *request) checkToken(a authority, dtbs, token []byte) uint16 {
	if !a.dm {
		if len(token) != 0 {
			return apdu.SWIncorrectData
		}
		return apdu.SWOK
	}
	if len(token) == 0 {
		return apdu.SWSecurityNotSatisfied
	}
	tv := r.roleSD(PrivTokenVerification)
	if tv == nil {
		return apdu.SWSecurityNotSatisfied
	}
	key := roleKey(tv, KVNToken)
	if key == nil {
		return apdu.SWSecurityNotSatisfied
	}
	if ok, err := command.VerifyAESToken(key, dtbs, token); err != nil || !ok {
		return apdu.SWSecurityNotSatisfied
	}
	return apdu.SWOK
}

// roleSD finds the SD holding a DM role privilege (Token Verification,
// Receipt Generation) for the requesting SD: first a supplementary SD among
// its ancestors, then any supplementary SD with the privilege, then the ISD
// if it has it (GPC 9.1.3.1, 9.1.3.6: one per AM sub-hierarchy).
func (r *request) roleSD(p Privileges) *entry {
	for cur, n := r.st.find(r.sd.SD), 0; cur != nil && n < 64; n++ {
		if cur.Kind == KindSD && cur.Privileges.Has(p) {
			return cur
		}
		cur = r.st.find(cur.SD)
	}
	for _, e := range r.st.Entries {
		if e.Kind == KindSD && e.Privileges.Has(p) && !e.locked() {
			return e
		}
	}
	if isd := r.st.isd(); isd.Privileges.Has(p) {
		return isd
	}
	return nil
}

func roleKey(sd *entry, kvn byte) []byte {
	ks := sd.keySet(kvn)
	if ks == nil {
		return nil
	}
	k := ks.key(1)
	if k == nil || k.Type != KeyTypeAES {
		return nil
	}
	return k.Value
}

// receipter is the Receipt Generation SD and key that will confirm a DM
// operation (nil: no receipt, the response is 00).
type receipter struct {
	sd  *entry
	key []byte
}

// receiptFor finds what confirms a DM operation, before the operation
// changes anything: a receipt that cannot be produced (no receipt key, an
// unusable one, or the confirmation counter at its end, GPC C.5) rejects
// the command with 6985 and leaves the card unchanged, rather than
// answering an error after the operation took place.
func (r *request) receiptFor(a authority) (*receipter, uint16) {
	if !a.dm {
		return nil, apdu.SWOK
	}
	rg := r.roleSD(PrivReceiptGeneration)
	if rg == nil {
		return nil, apdu.SWOK
	}
	key := roleKey(rg, KVNReceipt)
	if len(key) != 16 && len(key) != 24 && len(key) != 32 {
		return nil, apdu.SWConditionsNotSatisfied
	}
	if rg.ConfirmationCounter == 0xFFFF {
		return nil, apdu.SWConditionsNotSatisfied
	}
	return &receipter{sd: rg, key: key}, apdu.SWOK
}

// confirmation builds the DM response data (GPC 11.1.6, C.5): len ||
// (len receipt || receipt || confirmation data), or the plain 00 without a
// receipter. receiptInput appends the operation's fields to the
// confirmation data (command.*ReceiptInput).
func (r *request) confirmation(rc *receipter, receiptInput func(conf []byte) []byte) ([]byte, uint16) {
	if rc == nil {
		return []byte{0x00}, apdu.SWOK
	}
	counter := rc.sd.ConfirmationCounter + 1
	unique := append(r.sdData(rc.sd, "42"), r.sdData(rc.sd, "45")...)
	cd := command.ConfirmationData(counter, unique, nil, nil)
	receipt, err := command.AESReceipt(rc.key, receiptInput(cd))
	if err != nil {
		// Not reached: receiptFor checked the key.
		return nil, apdu.SWConditionsNotSatisfied
	}
	rc.sd.ConfirmationCounter = counter
	return command.Confirmation(receipt, cd), apdu.SWOK
}

// install dispatches INSTALL on its P1 role bits (GPC Table 11-42).
func (r *request) install() ([]byte, uint16) {
	cmd := r.cmd
	if r.st.LifeCycle == CardLocked || r.st.LifeCycle == CardTerminated {
		return nil, apdu.SWConditionsNotSatisfied
	}
	a, s := r.authorityFor()
	if cmd.P1 != 0x20 && s != apdu.SWOK {
		return nil, s
	}
	f, starts, ok := lvFields(cmd.Data)
	if !ok {
		return nil, apdu.SWIncorrectData
	}
	// tokenCut returns the DTBS of GPC Tables C-4 to C-10: everything before
	// the "length of token" field, and the token.
	tokenCut := func(n int) ([]byte, []byte, bool) {
		if len(f) != n {
			return nil, nil, false
		}
		return command.InstallTokenDTBS(cmd.P1, cmd.P2, cmd.Data[:starts[n-1]]), f[n-1], true
	}
	switch cmd.P1 {
	case 0x02:
		if cmd.P2 != 0 {
			return nil, apdu.SWIncorrectP1P2
		}
		dtbs, token, ok := tokenCut(5)
		if !ok {
			return nil, apdu.SWIncorrectData
		}
		return r.installForLoad(a, f, dtbs, token, nil)
	case 0x04, 0x0C:
		if cmd.P2 != 0 {
			return nil, apdu.SWIncorrectP1P2
		}
		dtbs, token, ok := tokenCut(6)
		if !ok {
			return nil, apdu.SWIncorrectData
		}
		if st := r.checkToken(a, dtbs, token); st != apdu.SWOK {
			return nil, st
		}
		return r.installInstance(a, installReq{ELF: f[0], Module: f[1], Instance: f[2], Privileges: f[3], Params: f[4]}, cmd.P1&0x08 != 0)
	case 0x0E:
		// Combined load, install and make selectable (GPC 11.5.2.3.1, C-10):
		// load fields then install fields, then the token.
		if cmd.P2 != 0x01 && cmd.P2 != 0x03 && cmd.P2 != 0x00 {
			return nil, apdu.SWIncorrectP1P2
		}
		dtbs, token, ok := tokenCut(9)
		if !ok {
			return nil, apdu.SWIncorrectData
		}
		inst := &installReq{ELF: f[0], Module: f[4], Instance: f[5], Privileges: f[6], Params: f[7]}
		return r.installForLoad(a, [][]byte{f[0], f[1], f[2], f[3], token}, dtbs, token, inst)
	case 0x08:
		if cmd.P2 != 0 {
			return nil, apdu.SWIncorrectP1P2
		}
		dtbs, token, ok := tokenCut(6)
		if !ok || len(f[0]) != 0 || len(f[1]) != 0 {
			return nil, apdu.SWIncorrectData
		}
		if st := r.checkToken(a, dtbs, token); st != apdu.SWOK {
			return nil, st
		}
		return r.makeSelectable(a, f[2], f[3])
	case 0x10:
		dtbs, token, ok := tokenCut(6)
		if !ok || len(f[1]) != 0 || len(f[3]) != 0 {
			return nil, apdu.SWIncorrectData
		}
		if st := r.checkToken(a, dtbs, token); st != apdu.SWOK {
			return nil, st
		}
		return r.extradite(a, f[0], f[2], f[4])
	case 0x40:
		dtbs, token, ok := tokenCut(6)
		if !ok || len(f[1]) != 0 {
			return nil, apdu.SWIncorrectData
		}
		if st := r.checkToken(a, dtbs, token); st != apdu.SWOK {
			return nil, st
		}
		return r.registryUpdate(a, f[0], f[2], f[3], f[4])
	case 0x20:
		if len(f) < 3 || len(f[0]) != 0 || len(f[1]) != 0 {
			return nil, apdu.SWIncorrectData
		}
		app := r.st.find(f[2])
		if app == nil || app.Kind == KindELF || !r.inScope(app) || app == r.sd {
			return nil, apdu.SWReferencedDataNotFound
		}
		if app.locked() {
			return nil, apdu.SWConditionsNotSatisfied
		}
		r.ch.PersoTarget = clone(app.AID)
		r.ch.StoreNext = 0
		return []byte{0x00}, apdu.SWOK
	}
	return nil, apdu.SWIncorrectP1P2
}

// installForLoad starts a load (GPC 9.3.5, 11.5.2.3.1).
func (r *request) installForLoad(a authority, f [][]byte, dtbs, token []byte, inst *installReq) ([]byte, uint16) {
	elf, sdAID, hash, params := f[0], f[1], f[2], f[3]
	if !validAID(elf) {
		return nil, apdu.SWIncorrectData
	}
	if r.st.find(elf) != nil {
		return nil, apdu.SWConditionsNotSatisfied
	}
	target := r.sd
	if len(sdAID) != 0 {
		target = r.st.find(sdAID)
		if target == nil || !target.isSD() || !r.inScope(target) {
			return nil, apdu.SWReferencedDataNotFound
		}
	}
	if target.locked() {
		return nil, apdu.SWConditionsNotSatisfied
	}
	switch len(hash) {
	case 0, 20, 32, 48, 64:
	default:
		return nil, apdu.SWIncorrectData
	}
	if a.dm && len(hash) == 0 {
		// GPC C.2: the LFDBH is mandatory with a load token.
		return nil, apdu.SWIncorrectData
	}
	if st := r.checkToken(a, dtbs, token); st != apdu.SWOK {
		return nil, st
	}
	if inst != nil {
		if !validAID(inst.Instance) || r.st.find(inst.Instance) != nil {
			return nil, apdu.SWConditionsNotSatisfied
		}
	}
	r.ch.Load = &loadState{ELF: clone(elf), SD: clone(target.AID), LFDBH: clone(hash), DM: a.dm,
		Token: len(token) > 0, Params: clone(params), Install: inst}
	return []byte{0x00}, apdu.SWOK
}

// load is LOAD (GPC 11.6): sequential blocks, then the load file checks of
// GPC 9.3.5 (LFDBH, DAP incl. Mandated DAP, token) on the last block.
func (r *request) load() ([]byte, uint16) {
	cmd := r.cmd
	ls := r.ch.Load
	if ls == nil {
		return nil, apdu.SWConditionsNotSatisfied
	}
	if cmd.P1&0x7F != 0 {
		r.ch.Load = nil
		return nil, apdu.SWIncorrectP1P2
	}
	if int(cmd.P2) != ls.Next {
		r.ch.Load = nil
		return nil, apdu.SWIncorrectP1P2
	}
	if len(ls.Data)+len(cmd.Data) > maxLoadFile {
		r.ch.Load = nil
		return nil, apdu.SWNotEnoughMemory
	}
	ls.Data = append(ls.Data, cmd.Data...)
	ls.Next++
	if cmd.P1&0x80 == 0 {
		if ls.Next > 0xFF {
			r.ch.Load = nil
			return nil, apdu.SWIncorrectP1P2
		}
		return []byte{0x00}, apdu.SWOK
	}
	r.ch.Load = nil
	// The load file: DAP blocks (E2), then the LFDB (C4); no padding.
	objs, err := tlv.ParseWith(ls.Data, tlv.Options{Accept80As128: true})
	if err != nil || len(objs) == 0 {
		return nil, apdu.SWIncorrectData
	}
	var lfdb []byte
	var daps []tlv.TLV
	for _, o := range objs {
		switch o.Tag {
		case 0xE2:
			daps = append(daps, o)
		case 0xC4:
			lfdb = o.Value
		case 0xD4, 0xD3:
			// Ciphered load files (GPC C.6) are not supported.
			return nil, apdu.SWIncorrectData
		}
	}
	if lfdb == nil {
		return nil, apdu.SWIncorrectData
	}
	if len(daps) > 0 && len(ls.LFDBH) == 0 {
		return nil, apdu.SWIncorrectData
	}
	if len(ls.LFDBH) > 0 && !bytes.Equal(hashOf(lfdb, len(ls.LFDBH)), ls.LFDBH) {
		return nil, apdu.SWIncorrectData
	}
	// DAP verification (GPC 9.3.5, C.3).
	verified := map[string]bool{}
	for _, d := range daps {
		inner, err := tlv.ParseWith(d.Value, gpTLV)
		if err != nil {
			return nil, apdu.SWIncorrectData
		}
		var sdAID, sig []byte
		for _, x := range inner {
			switch x.Tag {
			case 0x4F:
				sdAID = x.Value
			case 0xC3:
				sig = x.Value
			}
		}
		v := r.st.find(sdAID)
		if v == nil || !v.isSD() || !v.Privileges.Has(PrivDAPVerification) {
			return nil, apdu.SWReferencedDataNotFound
		}
		key := roleKey(v, KVNDAP)
		if key == nil || len(ls.LFDBH) < minHash(len(key)) {
			return nil, apdu.SWSecurityNotSatisfied
		}
		want, err := command.AESDAP(key, ls.LFDBH)
		if err != nil || !gpcrypto.Equal(want, sig) {
			return nil, apdu.SWSecurityNotSatisfied
		}
		verified[string(v.AID)] = true
	}
	for _, e := range r.st.Entries {
		if e.isSD() && e.Privileges.Has(PrivMandatedDAP) && e.LifeCycle == LCPersonalized && !verified[string(e.AID)] {
			return nil, apdu.SWSecurityNotSatisfied
		}
	}
	target := r.st.find(ls.SD)
	if target == nil {
		return nil, apdu.SWReferencedDataNotFound
	}
	if target.Privileges.Has(PrivDAPVerification) && !verified[string(target.AID)] {
		return nil, apdu.SWSecurityNotSatisfied
	}
	if r.st.find(ls.ELF) != nil {
		return nil, apdu.SWConditionsNotSatisfied
	}
	a := authority{dm: ls.DM}
	rc, s := r.receiptFor(a)
	if s != apdu.SWOK {
		return nil, s
	}
	modules, version, isCAP := parseCAP(lfdb)
	e := &entry{AID: clone(ls.ELF), Kind: KindELF, LifeCycle: LCLoaded, SD: clone(target.AID), Modules: modules,
		OpaqueModules: !isCAP, Version: version}
	r.st.Entries = append(r.st.Entries, e)
	if ls.Install != nil {
		// GPC C-16: the receipt covers ELF, instance and SD.
		if out, s := r.installInstance(authority{}, *ls.Install, true); s != apdu.SWOK {
			return out, s
		}
		return r.confirmation(rc, func(cd []byte) []byte {
			return command.CombinedReceiptInput(cd, ls.ELF, ls.Install.Instance, target.AID)
		})
	}
	return r.confirmation(rc, func(cd []byte) []byte { return command.LoadReceiptInput(cd, ls.ELF, target.AID) })
}

// minHash is GPC Table C-3 for AES keys: the LFDBH must be at least as
// strong as the key (SHA-256 for AES-128, SHA-384 for AES-192, SHA-512 for
// AES-256).
func minHash(keyLen int) int {
	switch keyLen {
	case 24:
		return 48
	case 32:
		return 64
	}
	return 32
}

func hashOf(b []byte, n int) []byte {
	switch n {
	case 20:
		h := sha1.Sum(b)
		return h[:]
	case 32:
		h := sha256.Sum256(b)
		return h[:]
	case 48:
		h := sha512.Sum384(b)
		return h[:]
	case 64:
		h := sha512.Sum512(b)
		return h[:]
	}
	return nil
}

// parseCAP reads the applet AIDs (Applet component, tag 03) and the package
// version (Header component, tag 01) of a Java Card CAP load file data
// block: components are tag (1) || size (2) || info (JCVM 3.x 6.2). isCAP
// is false, with no modules and version 1.0, when the data is not a CAP
// file (no Header component, or trailing bytes).
func parseCAP(b []byte) (modules [][]byte, version []byte, isCAP bool) {
	version = []byte{1, 0}
	for len(b) >= 3 {
		tag := b[0]
		n := int(b[1])<<8 | int(b[2])
		if len(b) < 3+n || tag == 0 || tag > 12 {
			return nil, []byte{1, 0}, false
		}
		info := b[3 : 3+n]
		switch tag {
		case 1:
			// magic (4) minor major flags, package: minor major AID_length AID
			if n < 10 || !bytes.Equal(info[:4], []byte{0xDE, 0xCA, 0xFF, 0xED}) {
				return nil, []byte{1, 0}, false
			}
			isCAP = true
			version = []byte{info[8], info[7]}
		case 3:
			if n < 1 {
				return nil, []byte{1, 0}, false
			}
			cnt, p := int(info[0]), 1
			for i := 0; i < cnt; i++ {
				if p >= len(info) {
					return nil, []byte{1, 0}, false
				}
				l := int(info[p])
				if p+1+l+2 > len(info) {
					return nil, []byte{1, 0}, false
				}
				modules = append(modules, clone(info[p+1:p+1+l]))
				p += 1 + l + 2
			}
		}
		b = b[3+n:]
	}
	if !isCAP || len(b) != 0 {
		// No Header component, or bytes after the last component: not a
		// CAP file, so nothing read from it describes the load file.
		return nil, []byte{1, 0}, false
	}
	return modules, version, true
}

// checkPrivileges validates a privilege field (GPC 6.6, Table 11-7 to
// 11-9): 1 or 3 bytes; SD-only privileges need the Security Domain bit; AM
// and DM are exclusive.
func checkPrivileges(b []byte) (Privileges, bool) {
	var p Privileges
	switch len(b) {
	case 0:
		return p, true
	case 1:
		p[0] = b[0]
	case 3:
		copy(p[:], b)
	default:
		return p, false
	}
	sd := p[0]&0x80 != 0
	if !sd && (p[0]&0x61 != 0 || p[1]&0x60 != 0 || p[2]&0xC0 != 0) {
		return p, false
	}
	if p.Has(PrivAuthorizedManagement) && p.Has(PrivDelegatedManagement) {
		return p, false
	}
	if p[0]&0x01 != 0 && p[0]&0xC0 != 0xC0 {
		return p, false // Mandated DAP implies DAP Verification
	}
	return p, true
}

// installParams checks the install parameters (GPC Table 11-49): C9 is
// mandatory. It returns the C9 value and the implicit selection bytes (CF).
func installParams(b []byte) (c9, cf []byte, ok bool) {
	objs, err := tlv.ParseWith(b, gpTLV)
	if err != nil {
		return nil, nil, false
	}
	found := false
	for _, o := range objs {
		switch o.Tag {
		case 0xC9:
			found = true
			c9 = o.Value
		case 0xEF:
			inner, err := tlv.ParseWith(o.Value, gpTLV)
			if err != nil {
				return nil, nil, false
			}
			for _, x := range inner {
				if x.Tag == 0xCF && len(x.Value) == 1 {
					cf = append(cf, x.Value[0])
				}
			}
		}
	}
	return c9, cf, found
}

// installInstance is INSTALL [for install] (and make selectable): GPC
// 9.3.6, 11.5.2.3.2.
func (r *request) installInstance(a authority, in installReq, selectable bool) ([]byte, uint16) {
	elf := r.st.find(in.ELF)
	if elf == nil || elf.Kind != KindELF {
		return nil, apdu.SWReferencedDataNotFound
	}
	known := elf.OpaqueModules
	for _, m := range elf.Modules {
		if bytes.Equal(m, in.Module) {
			known = true
		}
	}
	if !known || !validAID(in.Module) {
		return nil, apdu.SWReferencedDataNotFound
	}
	if !validAID(in.Instance) {
		return nil, apdu.SWIncorrectData
	}
	if r.st.find(in.Instance) != nil {
		return nil, apdu.SWConditionsNotSatisfied
	}
	priv, ok := checkPrivileges(in.Privileges)
	if !ok {
		return nil, apdu.SWIncorrectData
	}
	c9, cf, ok := installParams(in.Params)
	if !ok {
		return nil, apdu.SWIncorrectData
	}
	isSD := priv.Has(PrivSecurityDomain)
	if isSD != bytes.Equal(in.ELF, SSDPackageAID) {
		// Only the SD package makes Security Domains, and it makes nothing else.
		return nil, apdu.SWIncorrectData
	}
	if a.dm && (priv.Has(PrivAuthorizedManagement) || priv.Has(PrivTokenVerification) || priv.Has(PrivGlobalRegistry)) {
		return nil, apdu.SWConditionsNotSatisfied
	}
	rc, s := r.receiptFor(a)
	if s != apdu.SWOK {
		return nil, s
	}
	e := &entry{AID: clone(in.Instance), Kind: KindApp, LifeCycle: LCInstalled, Privileges: priv, SD: clone(r.sd.AID),
		ELF: clone(in.ELF), Module: clone(in.Module), InstallParams: clone(c9), ImplicitSelection: cf}
	if isSD {
		e.Kind = KindSD
		e.KDD = clone(r.st.KDD)
		e.SCP03I, e.SCP02I = 0x70, 0x55
	}
	if selectable {
		e.LifeCycle = LCSelectable
		if priv.Has(PrivCardReset) {
			// Card Reset belongs to one application at a time (GPC 6.6.1).
			for _, x := range r.st.Entries {
				x.Privileges[0] &^= PrivCardReset[0]
			}
		}
	} else {
		e.Privileges[0] &^= PrivCardReset[0]
	}
	if priv.Has(PrivFinalApplication) {
		for _, x := range r.st.Entries {
			x.Privileges[1] &^= PrivFinalApplication[1]
		}
	}
	r.st.Entries = append(r.st.Entries, e)
	return r.confirmation(rc, func(cd []byte) []byte { return command.InstallReceiptInput(cd, in.ELF, in.Instance) })
}

// makeSelectable is INSTALL [for make selectable] (GPC 11.5.2.3.3): only
// the Card Reset privilege of the field is honoured.
func (r *request) makeSelectable(a authority, aid, privs []byte) ([]byte, uint16) {
	e := r.st.find(aid)
	if e == nil || e.Kind == KindELF || e.Kind == KindISD || !r.inScope(e) {
		return nil, apdu.SWReferencedDataNotFound
	}
	priv, ok := checkPrivileges(privs)
	if !ok {
		return nil, apdu.SWIncorrectData
	}
	if e.LifeCycle != LCInstalled {
		return nil, apdu.SWConditionsNotSatisfied
	}
	rc, s := r.receiptFor(a)
	if s != apdu.SWOK {
		return nil, s
	}
	e.LifeCycle = LCSelectable
	if priv.Has(PrivCardReset) {
		for _, x := range r.st.Entries {
			x.Privileges[0] &^= PrivCardReset[0]
		}
		e.Privileges[0] |= PrivCardReset[0]
	}
	return r.confirmation(rc, func(cd []byte) []byte { return command.InstallReceiptInput(cd, e.ELF, e.AID) })
}

// extradite is INSTALL [for extradition] (GPC 9.4): the application or ELF
// moves to another SD, which must be PERSONALIZED (or the ISD) and may not
// take an ELF when it has DAP Verification.
func (r *request) extradite(a authority, destAID, aid, _ []byte) ([]byte, uint16) {
	obj := r.st.find(aid)
	if obj == nil || obj.Kind == KindISD || !r.inScope(obj) || obj == r.sd {
		return nil, apdu.SWReferencedDataNotFound
	}
	dest := r.st.find(destAID)
	if dest == nil || !dest.isSD() {
		return nil, apdu.SWReferencedDataNotFound
	}
	if dest.locked() || (dest.Kind != KindISD && dest.LifeCycle != LCPersonalized) {
		return nil, apdu.SWConditionsNotSatisfied
	}
	if obj.Kind == KindELF && dest.Privileges.Has(PrivDAPVerification) {
		return nil, apdu.SWConditionsNotSatisfied
	}
	if obj.isSD() && r.st.inHierarchy(dest, obj) {
		return nil, apdu.SWConditionsNotSatisfied // no cycles
	}
	rc, s := r.receiptFor(a)
	if s != apdu.SWOK {
		return nil, s
	}
	old := obj.SD
	obj.SD = clone(dest.AID)
	return r.confirmation(rc, func(cd []byte) []byte { return command.ExtraditionReceiptInput(cd, old, obj.AID, dest.AID) })
}

// registryUpdate is INSTALL [for registry update] (GPC 11.5.2.3.7): an
// atomic change of association and/or privileges.
func (r *request) registryUpdate(a authority, sdAID, aid, privs, params []byte) ([]byte, uint16) {
	if len(aid) == 0 {
		return nil, apdu.SWIncorrectData
	}
	obj := r.st.find(aid)
	if obj == nil || obj.Kind == KindELF || obj.Kind == KindISD || !r.inScope(obj) || obj == r.sd {
		return nil, apdu.SWReferencedDataNotFound
	}
	var dest *entry
	if len(sdAID) != 0 {
		dest = r.st.find(sdAID)
		if dest == nil || !dest.isSD() {
			return nil, apdu.SWReferencedDataNotFound
		}
		if dest.locked() || (dest.Kind != KindISD && dest.LifeCycle != LCPersonalized) {
			return nil, apdu.SWConditionsNotSatisfied
		}
		if obj.isSD() && r.st.inHierarchy(dest, obj) {
			return nil, apdu.SWConditionsNotSatisfied
		}
	}
	newPriv := obj.Privileges
	if len(privs) != 0 {
		p, ok := checkPrivileges(privs)
		if !ok || p.Has(PrivSecurityDomain) != obj.isSD() {
			return nil, apdu.SWIncorrectData
		}
		if a.dm && (p.Has(PrivAuthorizedManagement) || p.Has(PrivTokenVerification) || p.Has(PrivGlobalRegistry)) {
			return nil, apdu.SWConditionsNotSatisfied
		}
		newPriv = p
	}
	if len(params) != 0 {
		if _, err := tlv.ParseWith(params, gpTLV); err != nil {
			return nil, apdu.SWIncorrectData
		}
	}
	rc, s := r.receiptFor(a)
	if s != apdu.SWOK {
		return nil, s
	}
	old := obj.SD
	if dest != nil {
		obj.SD = clone(dest.AID)
	}
	obj.Privileges = newPriv
	newSD := obj.SD
	return r.confirmation(rc, func(cd []byte) []byte {
		return command.RegistryUpdateReceiptInput(cd, old, obj.AID, newSD, privs, params)
	})
}

// deleteCmd is DELETE (GPC 11.2): an object, an object and its related
// objects, or a key.
func (r *request) deleteCmd() ([]byte, uint16) {
	cmd := r.cmd
	if cmd.P1 != 0 || (cmd.P2 != 0 && cmd.P2 != 0x80) {
		return nil, apdu.SWIncorrectP1P2
	}
	if r.st.LifeCycle == CardLocked || r.st.LifeCycle == CardTerminated {
		return nil, apdu.SWConditionsNotSatisfied
	}
	// GPC Table 11-22: a plain sequence of TLVs (no padding, so that each
	// object's offset is the sum of the encodings before it).
	objs, err := tlv.ParseWith(cmd.Data, tlv.Options{Accept80As128: true})
	if err != nil || len(objs) == 0 {
		return nil, apdu.SWIncorrectData
	}
	var aid, token, keyID, kvn []byte
	tokenAt := len(cmd.Data)
	off := 0
	for _, o := range objs {
		switch o.Tag {
		case 0x4F:
			aid = o.Value
		case 0x9E:
			// The token TLV ends the signed data (GPC Table C-9).
			token = o.Value
			tokenAt = off
		case 0xD0:
			keyID = o.Value
		case 0xD2:
			kvn = o.Value
		case 0xB6:
		default:
			return nil, apdu.SWIncorrectData
		}
		off += len(o.Raw)
	}
	if aid == nil {
		return r.deleteKey(keyID, kvn)
	}
	a, s := r.authorityFor()
	if s != apdu.SWOK {
		return nil, s
	}
	if st := r.checkToken(a, command.TokenDTBS(cmd.P1, cmd.P2, cmd.Data[:tokenAt]), token); st != apdu.SWOK {
		return nil, st
	}
	e := r.st.find(aid)
	if e == nil || !r.inScope(e) || e == r.sd {
		return nil, apdu.SWReferencedDataNotFound
	}
	if e.Kind == KindISD {
		return nil, apdu.SWConditionsNotSatisfied
	}
	victims := []*entry{e}
	if cmd.P2 == 0x80 {
		victims = r.related(e)
	}
	doomed := map[*entry]bool{}
	for _, v := range victims {
		doomed[v] = true
	}
	for _, x := range r.st.Entries {
		if doomed[x] {
			continue
		}
		// Something that stays may not depend on what goes (GPC 9.5).
		if x.SD != nil {
			if p := r.st.find(x.SD); p != nil && doomed[p] {
				return nil, apdu.SWConditionsNotSatisfied
			}
		}
		if x.ELF != nil && x.Kind != KindELF {
			if p := r.st.find(x.ELF); p != nil && doomed[p] {
				return nil, apdu.SWConditionsNotSatisfied
			}
		}
	}
	for _, ch := range r.st.Channels {
		if ch == nil {
			continue
		}
		for _, v := range victims {
			if bytes.Equal(ch.Selected, v.AID) {
				return nil, apdu.SWConditionsNotSatisfied
			}
		}
	}
	rc, st := r.receiptFor(a)
	if st != apdu.SWOK {
		return nil, st
	}
	kept := r.st.Entries[:0]
	for _, x := range r.st.Entries {
		if !doomed[x] {
			kept = append(kept, x)
		}
	}
	r.st.Entries = kept
	for _, ch := range r.st.Channels {
		if ch != nil && ch.PersoTarget != nil && r.st.find(ch.PersoTarget) == nil {
			ch.PersoTarget = nil
		}
	}
	return r.confirmation(rc, func(cd []byte) []byte { return command.DeleteReceiptInput(cd, e.AID) })
}

// related returns e and everything that depends on it: the instances of an
// ELF, the sub-hierarchy of an SD.
func (r *request) related(e *entry) []*entry {
	out := []*entry{e}
	for _, x := range r.st.Entries {
		if x == e {
			continue
		}
		if e.Kind == KindELF && x.Kind != KindELF && bytes.Equal(x.ELF, e.AID) {
			out = append(out, x)
			if x.isSD() {
				for _, y := range r.st.Entries {
					if y != x && r.st.inHierarchy(y, x) {
						out = append(out, y)
					}
				}
			}
			continue
		}
		if e.isSD() && r.st.inHierarchy(x, e) {
			out = append(out, x)
		}
	}
	// De-duplicate.
	seen := map[*entry]bool{}
	uniq := out[:0]
	for _, x := range out {
		if !seen[x] {
			seen[x] = true
			uniq = append(uniq, x)
		}
	}
	return uniq
}

// deleteKey deletes keys of the requesting SD by key id and/or KVN (GPC
// 11.2.2.3, Table 11-24).
func (r *request) deleteKey(keyID, kvn []byte) ([]byte, uint16) {
	if (keyID == nil && kvn == nil) || (keyID != nil && len(keyID) != 1) || (kvn != nil && len(kvn) != 1) {
		return nil, apdu.SWIncorrectData
	}
	sd := r.sd
	found := false
	var sets []KeySet
	for _, ks := range sd.KeySets {
		if kvn != nil && ks.KVN != kvn[0] {
			sets = append(sets, ks)
			continue
		}
		var keep []Key
		for _, k := range ks.Keys {
			if keyID == nil || k.ID == keyID[0] {
				found = true
				continue
			}
			keep = append(keep, k)
		}
		if len(keep) > 0 {
			ks.Keys = keep
			sets = append(sets, ks)
		}
	}
	if !found {
		return nil, apdu.SWReferencedDataNotFound
	}
	sd.KeySets = sets
	return []byte{0x00}, apdu.SWOK
}

// setStatus is SET STATUS (GPC 11.10, life cycles of GPC 5).
func (r *request) setStatus() ([]byte, uint16) {
	cmd := r.cmd
	req := r.sd
	switch cmd.P1 {
	case 0x80:
		return r.setCardStatus()
	case 0x40, 0x60:
	default:
		return nil, apdu.SWIncorrectP1P2
	}
	e := r.st.find(cmd.Data)
	if e == nil || e.Kind == KindELF {
		return nil, apdu.SWReferencedDataNotFound
	}
	if e.Kind == KindISD {
		return nil, apdu.SWIncorrectData
	}
	if r.st.LifeCycle == CardLocked {
		// In CARD_LOCKED only the card unlock is allowed (GPC Table 11-1).
		return nil, apdu.SWConditionsNotSatisfied
	}
	if e == req {
		// An SD on itself: SELECTABLE -> PERSONALIZED, or lock (GPC 5.3.2).
		switch {
		case cmd.P1 == 0x40 && cmd.P2 == LCPersonalized && e.LifeCycle == LCSelectable:
			e.LifeCycle = LCPersonalized
			return nil, apdu.SWOK
		case cmd.P2&0x80 != 0 && !e.locked():
			e.LifeCycle |= LCLocked
			return nil, apdu.SWOK
		}
		return nil, apdu.SWIncorrectData
	}
	if !r.inScope(e) && !req.Privileges.Has(PrivGlobalLock) {
		return nil, apdu.SWReferencedDataNotFound
	}
	if req.Kind != KindISD && !req.Privileges.Has(PrivAuthorizedManagement) && !req.Privileges.Has(PrivGlobalLock) {
		return nil, apdu.SWConditionsNotSatisfied
	}
	if cmd.P1 == 0x60 && !e.isSD() {
		return nil, apdu.SWIncorrectData
	}
	lock := cmd.P2&0x80 != 0
	if lock == e.locked() {
		// A transition to the current state is rejected (gp-card.md 2.6).
		return nil, apdu.SWIncorrectData
	}
	targets := []*entry{e}
	if cmd.P1 == 0x60 {
		for _, x := range r.st.Entries {
			if x != e && x.Kind != KindELF && r.st.inHierarchy(x, e) {
				targets = append(targets, x)
			}
		}
	}
	for _, x := range targets {
		if lock {
			x.LifeCycle |= LCLocked
		} else {
			x.LifeCycle &^= LCLocked
		}
	}
	return nil, apdu.SWOK
}

// setCardStatus changes the card life cycle (GPC 5.1, 11.10.2.2): lock and
// unlock need Card Lock, terminate needs Card Terminate.
func (r *request) setCardStatus() ([]byte, uint16) {
	p := r.sd.Privileges
	to := r.cmd.P2
	cur := r.st.LifeCycle
	switch to {
	case CardLocked:
		if !p.Has(PrivCardLock) {
			return nil, apdu.SWConditionsNotSatisfied
		}
		if cur != CardSecured {
			return nil, apdu.SWIncorrectData
		}
	case CardSecured:
		switch cur {
		case CardLocked:
			if !p.Has(PrivCardLock) {
				return nil, apdu.SWConditionsNotSatisfied
			}
		case CardInitialized:
			if r.sd.Kind != KindISD {
				return nil, apdu.SWConditionsNotSatisfied
			}
		default:
			return nil, apdu.SWIncorrectData
		}
	case CardInitialized:
		if cur != CardOPReady || r.sd.Kind != KindISD {
			return nil, apdu.SWIncorrectData
		}
	case CardTerminated:
		if !p.Has(PrivCardTerminate) {
			return nil, apdu.SWConditionsNotSatisfied
		}
	default:
		return nil, apdu.SWIncorrectData
	}
	r.st.LifeCycle = to
	return nil, apdu.SWOK
}
