package card

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"testing"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/command"
	"github.com/tsmhub/tsmhub/pkg/gp/internal/testvectors"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// installRoles are the INSTALL roles of GPC Table 11-41 (gp-card.md 2.3).
var installRoles = []byte{0x02, 0x04, 0x08, 0x0C, 0x0E, 0x10, 0x20, 0x40}

// installFieldCount is the number of LV fields install() expects per role,
// token included (0: at least 3, personalization).
var installFieldCount = map[byte]int{0x02: 5, 0x04: 6, 0x08: 6, 0x0C: 6, 0x0E: 9, 0x10: 6, 0x40: 6, 0x20: 0}

// Fixture AIDs of FuzzInstallData: the worked examples' (gp-derived.json,
// gp-card.md 2.4) and the kaoh session's (scp02-sessions.json).
var (
	fzInstance = mustHex("A000000555010101")
	fzSPSD     = mustHex("A000000555AA01")
	fzVisaSD   = mustHex("A000000003000000")
	fzDAPSD    = mustHex("A000000555DA01")
	fzDAPKey   = mustHex("A0A1A2A3A4A5A6A7A8A9AAABACADAEAF")
	fzRoleSD   = mustHex("A000000555EE01")
	fzKaohELF  = mustHex("D0D1D2D3D4D501")
	// The worked examples' token and receipt keys (gp-derived.json).
	fzTokenKey   = mustHex("000102030405060708090A0B0C0D0E0F")
	fzReceiptKey = mustHex("F0E0D0C0B0A090807060504030201000")
)

// FuzzInstallData modes: the DM SP SD requests instead of the ISD, and the
// token field is replaced by a valid token (the fuzzer cannot forge one).
const (
	fzDM   byte = 0x01
	fzSign byte = 0x02
	// fzCounterEnd starts the Receipt Generation SD at its last
	// confirmation counter (FFFF: GPC C.5, the counter never wraps).
	fzCounterEnd byte = 0x04
	// fzNoReceiptKey drops the receipt key of the Receipt Generation SD.
	fzNoReceiptKey byte = 0x08
	// fzLoadBlock is the first LOAD block size of the kaoh session.
	fzLoadBlock = 239
)

// FuzzInstallData feeds INSTALL data fields and load files to the card's
// parsers directly: lvFields, checkPrivileges and installParams on every
// field and for every role's layout, parseCAP on the load file and its C4
// value. Then it runs INSTALL (P1, P2, data) and the LOAD of the load file
// on a card, bypassing the secure channel (request built directly), with
// the ISD or (mode fzDM) a Delegated Management SD requesting; mode fzSign
// gives the data a valid token, fzCounterEnd and fzNoReceiptKey leave the
// Receipt Generation SD unable to confirm. Besides never panicking it
// asserts:
//   - lvFields: field offsets and headers stay inside the input, each header
//     decodes to its field's length, and the canonical re-encoding parses to
//     the same fields (byte-identical when the input was canonical);
//   - the token DTBS is P1 P2 Lc || data before the token LV (GPC C.4);
//   - checkPrivileges agrees with the rules of gp-card.md 2.8 and round-trips;
//   - installParams returns a C9 value that lies within the input;
//   - parseCAP agrees with an independent component walk and reports no
//     modules or version for data that is not a CAP file;
//   - a rejected INSTALL or LOAD leaves the registry and the confirmation
//     counter unchanged, an accepted one does what its role says and, for
//     DM, answers a confirmation with the next counter and a receipt that
//     verifies; the state still marshals and restores.
func FuzzInstallData(f *testing.F) {
	d := loadDerived(f)
	for _, a := range d.APDUs {
		cmd, err := apdu.Parse(hx(f, a.APDU))
		if err != nil || cmd.INS != 0xE6 {
			continue
		}
		for _, mode := range []byte{0, fzDM | fzSign} {
			f.Add(cmd.P1, cmd.P2, cmd.Data, []byte(nil), mode)
		}
	}
	// The kaoh INSTALL [for load] / LOAD / INSTALL [for install and make
	// selectable] session (plain commands), with its CAP file.
	var loadFile []byte
	var kaohInstalls []apdu.Command
	for _, s := range testvectors.Sessions(f, "scp02-sessions.json") {
		if s.Name != "gpshell_scp02_install_mac_enc" {
			continue
		}
		for _, c := range s.Commands {
			cmd, err := apdu.Parse(hx(f, c.Plain))
			if err != nil {
				f.Fatal(err)
			}
			switch cmd.INS {
			case 0xE8:
				loadFile = append(loadFile, cmd.Data...)
			case 0xE6:
				kaohInstalls = append(kaohInstalls, cmd)
			}
		}
	}
	if len(loadFile) == 0 || len(kaohInstalls) != 2 {
		f.Fatalf("kaoh install session not found in scp02-sessions.json")
	}
	for _, cmd := range kaohInstalls {
		f.Add(cmd.P1, cmd.P2, cmd.Data, loadFile, byte(0))
	}
	// The AES DAP worked example: INSTALL [for load] with its LFDBH, then the
	// DAP block and the LFDB.
	dapFile := append(hx(f, d.DAP.Block), 0xC4, byte(len(hx(f, d.DAP.LFDB))))
	dapFile = append(dapFile, hx(f, d.DAP.LFDB)...)
	for _, mode := range []byte{0, fzDM | fzSign} {
		f.Add(byte(0x02), byte(0x00), lvs(mustHex("A0000005550201"), nil, hx(f, d.DAP.Hash), nil, nil), dapFile, mode)
	}
	// Roles without a worked APDU: make selectable, combined load + install
	// + make selectable, and install of a fresh instance (the fixture holds
	// A000000555010101 already).
	f.Add(byte(0x08), byte(0x00), lvs(nil, nil, fzInstance, mustHex("04"), nil, nil), []byte(nil), byte(0))
	f.Add(byte(0x08), byte(0x00), lvs(nil, nil, fzInstance, mustHex("04"), nil, nil), []byte(nil), fzDM|fzSign)
	f.Add(byte(0x0E), byte(0x01), lvs(fzKaohELF, nil, nil, nil, mustHex("D0D1D2D3D4D50101"), mustHex("D0D1D2D3D4D5010101"),
		mustHex("00"), mustHex("C900"), nil), loadFile, byte(0))
	f.Add(byte(0x0C), byte(0x00), lvs(GenericELFAID, GenericModuleAID, mustHex("A000000555010102"), mustHex("000000"),
		mustHex("C900EF03CF0181"), nil), []byte(nil), fzDM|fzSign)
	f.Add(byte(0x40), byte(0x00), lvs(nil, nil, fzInstance, mustHex("040000"), mustHex("C9020102"), nil), []byte(nil), byte(0))
	f.Add(byte(0x04), byte(0x00), []byte{0x80}, []byte{0x01, 0x00, 0x0A, 0xDE, 0xCA, 0xFF, 0xED}, byte(0))
	// A DM operation whose receipt cannot be produced must change nothing
	// (regression: the card used to install, move or load first).
	f.Add(byte(0x0C), byte(0x00), lvs(GenericELFAID, GenericModuleAID, mustHex("A000000555010102"), mustHex("00"),
		mustHex("C900"), nil), []byte(nil), fzDM|fzSign|fzCounterEnd)
	f.Add(byte(0x10), byte(0x00), lvs(fzDAPSD, nil, fzInstance, nil, nil, nil), []byte(nil), fzDM|fzSign|fzNoReceiptKey)
	f.Add(byte(0x02), byte(0x00), lvs(mustHex("A0000005550201"), nil, hx(f, d.DAP.Hash), nil, nil), dapFile, fzDM|fzSign|fzCounterEnd)

	f.Fuzz(func(t *testing.T, p1, p2 byte, data, loadFile []byte, mode byte) {
		checkInstallFields(t, p1, p2, data)
		checkLoadFile(t, loadFile)
		runInstallAndLoad(t, p1, p2, data, loadFile, mode)
	})
}

// checkInstallFields asserts the lvFields invariants and feeds every field
// (and the whole input) to checkPrivileges and installParams, and each
// role's layout to the parsers at the role's positions.
func checkInstallFields(t *testing.T, p1, p2 byte, data []byte) {
	checkPrivilegesOracle(t, data)
	checkInstallParams(t, data)
	fields, starts, ok := lvFields(data)
	if !ok {
		if len(data) == 0 {
			t.Fatalf("lvFields rejects empty data")
		}
		return
	}
	if len(fields) != len(starts) {
		t.Fatalf("lvFields: %d fields, %d offsets", len(fields), len(starts))
	}
	canonical := []byte{}
	minimal := true
	for i, v := range fields {
		end := len(data)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		if starts[i] < 0 || starts[i] >= end || end > len(data) || (i == 0 && starts[0] != 0) {
			t.Fatalf("lvFields: field %d spans %d..%d of %d bytes", i, starts[i], end, len(data))
		}
		hdr := end - starts[i] - len(v)
		if hdr < 1 || hdr > 5 || !bytes.Equal(data[starts[i]+hdr:end], v) {
			t.Fatalf("lvFields: field %d (%d bytes) does not end its %d..%d span", i, len(v), starts[i], end)
		}
		if n := headerLength(data[starts[i] : starts[i]+hdr]); n != len(v) {
			t.Fatalf("lvFields: field %d header %X says %d, field has %d bytes", i, data[starts[i]:starts[i]+hdr], n, len(v))
		}
		if !bytes.Equal(data[starts[i]:starts[i]+hdr], tlv.LengthBytes(len(v))) {
			minimal = false
		}
		canonical = tlv.AppendLV(canonical, v)
		checkPrivilegesOracle(t, v)
		checkInstallParams(t, v)
	}
	again, _, ok := lvFields(canonical)
	if !ok || len(again) != len(fields) {
		t.Fatalf("lvFields: canonical re-encoding %X does not parse back to %d fields", canonical, len(fields))
	}
	for i := range again {
		if !bytes.Equal(again[i], fields[i]) {
			t.Fatalf("lvFields: field %d changes through re-encoding", i)
		}
	}
	if minimal != bytes.Equal(canonical, data) {
		t.Fatalf("lvFields: minimal headers %v but canonical re-encoding equal %v", minimal, bytes.Equal(canonical, data))
	}
	if n := len(fields); n > 0 {
		// GPC Tables C-4 to C-10: P1 P2 Lc || data up to the token's length.
		cut := data[:starts[n-1]]
		dtbs := command.InstallTokenDTBS(p1, p2, cut)
		lc := []byte{byte(len(cut))}
		if len(cut) > 255 {
			lc = []byte{0, byte(len(cut) >> 8), byte(len(cut))}
		}
		if !bytes.Equal(dtbs, append(append([]byte{p1, p2}, lc...), cut...)) {
			t.Fatalf("token DTBS %X for data %X", dtbs, cut)
		}
	}
	for _, role := range installRoles {
		want := installFieldCount[role]
		if (want != 0 && len(fields) != want) || len(fields) < 3 {
			continue
		}
		switch role {
		case 0x04, 0x08, 0x0C, 0x40:
			checkPrivilegesOracle(t, fields[3])
			if role != 0x08 {
				checkInstallParams(t, fields[4])
			}
		case 0x0E:
			checkPrivilegesOracle(t, fields[6])
			checkInstallParams(t, fields[7])
		}
	}
}

// headerLength decodes an LV length header (gp-card.md 2.3: 00-7F, 80 as
// 128, 81-84 with 1-4 length bytes); -1 when it is none of these.
func headerLength(h []byte) int {
	switch {
	case len(h) == 1 && h[0] < 0x80:
		return int(h[0])
	case len(h) == 1 && h[0] == 0x80:
		return 128
	case len(h) >= 2 && int(h[0]) == 0x80|(len(h)-1):
		n := 0
		for _, b := range h[1:] {
			n = n<<8 | int(b)
		}
		return n
	}
	return -1
}

// checkPrivilegesOracle compares checkPrivileges with the rules of
// gp-card.md 2.8: 0, 1 or 3 bytes; the SD-only privileges (DAP
// Verification, Delegated Management, Mandated DAP, Authorized Management,
// Token Verification, Receipt Generation, Ciphered Load File Data Block)
// need Security Domain; AM and DM exclude each other; Mandated DAP (b1 of
// byte 1) comes with DAP Verification.
func checkPrivilegesOracle(t *testing.T, b []byte) {
	p, ok := checkPrivileges(b)
	var want Privileges
	wantOK := len(b) == 0 || len(b) == 1 || len(b) == 3
	if wantOK {
		copy(want[:], b)
		sdOnly := []Privileges{{0x40, 0, 0}, {0x20, 0, 0}, {0x01, 0, 0}, PrivAuthorizedManagement, PrivTokenVerification,
			PrivReceiptGeneration, PrivCipheredLoadFileBlock}
		for _, x := range sdOnly {
			if want.Has(x) && !want.Has(PrivSecurityDomain) {
				wantOK = false
			}
		}
		if want.Has(PrivAuthorizedManagement) && want.Has(PrivDelegatedManagement) {
			wantOK = false
		}
		if want[0]&0x01 != 0 && !want.Has(PrivDAPVerification) {
			wantOK = false
		}
	}
	if ok != wantOK {
		t.Fatalf("checkPrivileges(%X) = %v, the rules say %v", b, ok, wantOK)
	}
	if ok && p != want {
		t.Fatalf("checkPrivileges(%X) = %s", b, p)
	}
}

// checkInstallParams asserts that an accepted install parameters field
// (C9 mandatory) parses as GP TLV and that the C9 value and implicit
// selection bytes come from it.
func checkInstallParams(t *testing.T, b []byte) {
	c9, cf, ok := installParams(b)
	if !ok {
		return
	}
	objs, err := tlv.ParseWith(b, gpTLV)
	if err != nil {
		t.Fatalf("installParams accepts %X, which is not GP TLV: %v", b, err)
	}
	if _, found := tlv.Find(objs, 0xC9); !found {
		t.Fatalf("installParams accepts %X without C9", b)
	}
	if len(c9)+2 > len(b) || !bytes.Contains(b, c9) || 3*len(cf) > len(b) {
		t.Fatalf("installParams(%X): C9 %X, CF %X out of the input", b, c9, cf)
	}
}

// capWalk is an independent reading of a CAP file (JCVM 3.x 6.2:
// components tag (1) || size (2) || info, tags 1-12): the applet AIDs of
// the Applet components (count, then AID length || AID || install method
// offset (2) per applet) and the package version of the Header component
// (magic DECAFFED, minor, major, flags, then package minor, major, AID).
func capWalk(b []byte) (modules [][]byte, version []byte, ok bool) {
	header := false
	for off := 0; off < len(b); {
		if len(b)-off < 3 {
			return nil, nil, false
		}
		tag, size := b[off], int(b[off+1])<<8|int(b[off+2])
		info := b[off+3:]
		if tag < 1 || tag > 12 || size > len(info) {
			return nil, nil, false
		}
		info = info[:size]
		switch tag {
		case 1:
			if size < 10 || !bytes.HasPrefix(info, []byte{0xDE, 0xCA, 0xFF, 0xED}) {
				return nil, nil, false
			}
			header = true
			version = []byte{info[8], info[7]}
		case 3:
			if size < 1 {
				return nil, nil, false
			}
			rest := info[1:]
			for i := 0; i < int(info[0]); i++ {
				if len(rest) < 1 || len(rest) < 1+int(rest[0])+2 {
					return nil, nil, false
				}
				modules = append(modules, rest[1:1+int(rest[0])])
				rest = rest[1+int(rest[0])+2:]
			}
		}
		off += 3 + size
	}
	return modules, version, header
}

// checkLoadFile runs parseCAP on the load file and on the value of its C4
// object (the LFDB, GPC C.2) against capWalk.
func checkLoadFile(t *testing.T, file []byte) {
	checkCAP(t, file)
	if objs, err := tlv.ParseWith(file, tlv.Options{Accept80As128: true}); err == nil {
		for _, o := range objs {
			if o.Tag == 0xC4 {
				checkCAP(t, o.Value)
			}
		}
	}
}

func checkCAP(t *testing.T, b []byte) {
	modules, version, isCAP := parseCAP(b)
	wantModules, wantVersion, wantCAP := capWalk(b)
	if isCAP != wantCAP {
		t.Fatalf("parseCAP(%X): CAP %v, the component walk says %v", b, isCAP, wantCAP)
	}
	if !isCAP {
		if modules != nil || !bytes.Equal(version, []byte{1, 0}) {
			t.Fatalf("parseCAP(%X): not a CAP file but modules %X, version %X", b, modules, version)
		}
		return
	}
	if !bytes.Equal(version, wantVersion) || len(modules) != len(wantModules) {
		t.Fatalf("parseCAP(%X): version %X modules %X, want %X %X", b, version, modules, wantVersion, wantModules)
	}
	for i := range modules {
		if !bytes.Equal(modules[i], wantModules[i]) {
			t.Fatalf("parseCAP(%X): module %d %X, want %X", b, i, modules[i], wantModules[i])
		}
	}
}

// fuzzCard is the card of FuzzInstallData: Embedded (the ISD is the
// central SD and holds the generic ELF A00000055501 / A0000005550101) plus
// the SDs the seeds name: the SP SD A000000555AA01 with Delegated
// Management (gp-card.md 2.4), which owns the worked examples' instance
// A000000555010101 (INSTALLED); the kaoh session's SD A000000003000000; the
// DAP worked example's verifying SD with its key; and a Token Verification
// and Receipt Generation SD with the worked examples' token and receipt keys
// and SD unique data.
func fuzzCard(t *testing.T) *Card {
	c, err := Manufacture(ManufactureSpec{CIN: mustHex("0102030405060708"), Config: Embedded,
		IssuerMasterKey: bytes.Repeat([]byte{1}, 16), Rand: bytes.NewReader(make([]byte, 64))})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		c.AddSecurityDomain(fzSPSD, ISDAID, PrivDelegatedManagement, nil),
		c.AddSecurityDomain(fzRoleSD, ISDAID, PrivTokenVerification.Or(PrivReceiptGeneration), nil,
			KeySet{KVN: KVNToken, Keys: []Key{{ID: 1, Type: KeyTypeAES, Value: fzTokenKey}}},
			KeySet{KVN: KVNReceipt, Keys: []Key{{ID: 1, Type: KeyTypeAES, Value: fzReceiptKey}}}),
		c.SetData(fzRoleSD, "42", mustHex("112233")),
		c.SetData(fzRoleSD, "45", mustHex("4455667788")),
		c.AddSecurityDomain(fzVisaSD, ISDAID, PrivSecurityDomain, nil),
		c.AddSecurityDomain(fzDAPSD, ISDAID, PrivDAPVerification, nil,
			KeySet{KVN: KVNDAP, Keys: []Key{{ID: 1, Type: KeyTypeAES, Value: fzDAPKey}}}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	c.st.Entries = append(c.st.Entries, &entry{AID: clone(fzInstance), Kind: KindApp, LifeCycle: LCInstalled,
		SD: clone(fzSPSD), ELF: clone(GenericELFAID), Module: clone(GenericModuleAID)})
	return c
}

// direct runs one command on channel 0 of c, with the SD requester
// selected, as the processing of an authenticated secure channel would
// after unwrapping (transmit.go).
func direct(c *Card, requester []byte, ins, p1, p2 byte, data []byte) ([]byte, uint16) {
	st := c.st
	ch := st.Channels[0]
	ch.Selected = clone(requester)
	sel := st.find(requester)
	r := &request{c: c, st: st, ch: ch, sel: sel, sd: sel, auth: true,
		cmd: apdu.Command{CLA: 0x80, INS: ins, P1: p1, P2: p2, Data: data, Le: apdu.LeAbsent}}
	if ins == 0xE8 {
		return r.load()
	}
	return r.install()
}

func registrySnapshot(t *testing.T, c *Card) []byte {
	b, err := json.Marshal(c.st.Entries)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signInstall replaces the token (last LV field) of INSTALL data with a
// valid AES token under the fuzz card's token key (GPC C.4).
func signInstall(t *testing.T, p1, p2 byte, data []byte) []byte {
	_, starts, ok := lvFields(data)
	if !ok || len(starts) == 0 {
		return data
	}
	cut := data[:starts[len(starts)-1]]
	token, err := command.AESToken(fzTokenKey, command.InstallTokenDTBS(p1, p2, cut))
	if err != nil {
		t.Fatal(err)
	}
	return tlv.AppendLV(clone(cut), token)
}

// fzCounter is the confirmation counter of the fuzz card's Receipt
// Generation SD.
func fzCounter(c *Card) uint16 { return c.st.find(fzRoleSD).ConfirmationCounter }

// checkConfirmation checks a DM response: 00 without a receipt, or a
// confirmation whose counter is the next one, with the SD unique data of
// the Receipt Generation SD and, when input is not nil, a receipt that
// verifies over input(confirmation data) (GPC C.5).
func checkConfirmation(t *testing.T, what string, out []byte, counter uint16, input func(cd []byte) []byte) {
	pc, err := command.ParseConfirmation(out)
	if err != nil || len(pc.Receipt) != 16 || pc.Counter != counter+1 || up(pc.SDUniqueData) != "1122334455667788" {
		t.Fatalf("%s: confirmation %X (%+v, %v), want counter %d", what, out, pc, err, counter+1)
	}
	if input == nil {
		return
	}
	if ok, err := command.VerifyAESReceipt(fzReceiptKey, input(pc.Data), pc.Receipt); err != nil || !ok {
		t.Fatalf("%s: receipt of %X does not verify", what, out)
	}
}

// runInstallAndLoad runs INSTALL on the fuzz card and checks its outcome;
// a load file is loaded after an accepted INSTALL [for load], or before
// the INSTALL under a fixed INSTALL [for load] of the kaoh ELF by the ISD
// (with the SHA-256 LFDBH of its C4 value, so that DAP blocks can verify).
func runInstallAndLoad(t *testing.T, p1, p2 byte, data, loadFile []byte, mode byte) {
	c := fuzzCard(t)
	rg := c.st.find(fzRoleSD)
	if mode&fzCounterEnd != 0 {
		rg.ConfirmationCounter = 0xFFFF
	}
	if mode&fzNoReceiptKey != 0 {
		rg.KeySets = rg.KeySets[:1]
	}
	requester, dm := ISDAID, mode&fzDM != 0
	if dm {
		requester = fzSPSD
	}
	if mode&fzSign != 0 && p1 != 0x20 {
		data = signInstall(t, p1, p2, data)
	}
	loadRole := p1 == 0x02 || p1 == 0x0E
	if !loadRole && len(loadFile) > 0 {
		var hash []byte
		if objs, err := tlv.ParseWith(loadFile, tlv.Options{Accept80As128: true}); err == nil {
			if o, ok := tlv.Find(objs, 0xC4); ok {
				h := sha256.Sum256(o.Value)
				hash = h[:]
			}
		}
		if _, s := direct(c, ISDAID, 0xE6, 0x02, 0x00, lvs(fzKaohELF, nil, hash, nil, nil)); s != apdu.SWOK {
			t.Fatalf("fixed INSTALL [for load]: SW %04X", s)
		}
		runLoad(t, c, loadFile)
	}
	before, counter := registrySnapshot(t, c), fzCounter(c)
	out, s := direct(c, requester, 0xE6, p1, p2, data)
	after := registrySnapshot(t, c)
	fields, _, _ := lvFields(data)
	switch {
	case s != apdu.SWOK:
		if !bytes.Equal(before, after) || fzCounter(c) != counter {
			t.Fatalf("INSTALL P1=%02X rejected with %04X changed the registry", p1, s)
		}
		if c.st.Channels[0].Load != nil {
			t.Fatalf("INSTALL P1=%02X rejected with %04X left a load open", p1, s)
		}
	default:
		checkInstallEffect(t, c, p1, fields, before, after)
		if !dm || p1 == 0x02 || p1 == 0x0E || p1 == 0x20 {
			if !bytes.Equal(out, []byte{0x00}) || fzCounter(c) != counter {
				t.Fatalf("INSTALL P1=%02X answered %X, want 00 and no receipt", p1, out)
			}
			break
		}
		var input func([]byte) []byte
		switch p1 {
		case 0x04, 0x0C:
			input = func(cd []byte) []byte { return command.InstallReceiptInput(cd, fields[0], fields[2]) }
		case 0x08:
			e := c.st.find(fields[2])
			input = func(cd []byte) []byte { return command.InstallReceiptInput(cd, e.ELF, e.AID) }
		}
		checkConfirmation(t, "INSTALL", out, counter, input)
	}
	if loadRole && s == apdu.SWOK {
		runLoad(t, c, loadFile)
	}
	if s != apdu.SWOK && len(loadFile) == 0 {
		return // nothing changed: skip the (costly) persistence check
	}
	blob, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(blob)
	if err != nil {
		t.Fatalf("state does not restore: %v", err)
	}
	if again, _ := r.MarshalBinary(); !bytes.Equal(again, blob) {
		t.Fatalf("state changes through MarshalBinary/Restore")
	}
}

// checkInstallEffect checks what an accepted INSTALL did, per role.
func checkInstallEffect(t *testing.T, c *Card, p1 byte, f [][]byte, before, after []byte) {
	ch := c.st.Channels[0]
	switch p1 {
	case 0x02, 0x0E:
		if !bytes.Equal(before, after) || ch.Load == nil || !bytes.Equal(ch.Load.ELF, f[0]) {
			t.Fatalf("INSTALL [for load] accepted but load state %+v", ch.Load)
		}
	case 0x04, 0x0C:
		e := c.st.find(f[2])
		priv, _ := checkPrivileges(f[3])
		want := LCInstalled
		if p1 == 0x0C {
			want = LCSelectable
		}
		if e == nil || e.LifeCycle != want || !bytes.Equal(e.ELF, f[0]) || !bytes.Equal(e.Module, f[1]) ||
			!priv.Has(e.Privileges) || e.isSD() != priv.Has(PrivSecurityDomain) {
			t.Fatalf("INSTALL P1=%02X accepted but entry %+v", p1, e)
		}
	case 0x08:
		if e := c.st.find(f[2]); e == nil || e.LifeCycle != LCSelectable {
			t.Fatalf("INSTALL [for make selectable] accepted but entry %+v", e)
		}
	case 0x10:
		if e := c.st.find(f[2]); e == nil || !aidEq(e.SD, f[0]) {
			t.Fatalf("INSTALL [for extradition] accepted but entry %+v", e)
		}
	case 0x40:
		e := c.st.find(f[2])
		if e == nil || (len(f[0]) > 0 && !aidEq(e.SD, f[0])) {
			t.Fatalf("INSTALL [for registry update] accepted but entry %+v", e)
		}
		if priv, _ := checkPrivileges(f[3]); len(f[3]) > 0 && e.Privileges != priv {
			t.Fatalf("INSTALL [for registry update] accepted but privileges %s, want %s", e.Privileges, priv)
		}
	case 0x20:
		if !bytes.Equal(before, after) || !aidEq(ch.PersoTarget, f[2]) {
			t.Fatalf("INSTALL [for personalization] accepted but target %X", ch.PersoTarget)
		}
	default:
		t.Fatalf("INSTALL P1=%02X accepted", p1)
	}
}

// runLoad sends the load file in LOAD blocks and checks the outcome: an
// accepted load registers the ELF with the modules of its CAP file (or
// opaque modules) and, for a DM load, answers a confirmation whose receipt
// verifies; a rejected one changes nothing, unless the load carried the
// install part of a combined INSTALL (the ELF then stays when that install
// fails).
func runLoad(t *testing.T, c *Card, file []byte) {
	ls := c.st.Channels[0].Load
	if ls == nil {
		t.Fatalf("no load open")
	}
	elf, sd, dm, inst := clone(ls.ELF), clone(ls.SD), ls.DM, ls.Install
	requester := c.st.Channels[0].Selected
	before, counter := registrySnapshot(t, c), fzCounter(c)
	whole := clone(file)
	var out []byte
	var s uint16
	for block := 0; ; block++ {
		n := min(len(file), fzLoadBlock)
		p1 := byte(0x00)
		if n == len(file) {
			p1 = 0x80
		}
		out, s = direct(c, requester, 0xE8, p1, byte(block), file[:n])
		file = file[n:]
		if p1 == 0x80 || s != apdu.SWOK {
			break
		}
	}
	if c.st.Channels[0].Load != nil && s != apdu.SWOK {
		t.Fatalf("LOAD rejected with %04X but the load stays open", s)
	}
	e := c.st.find(elf)
	if s != apdu.SWOK {
		if inst == nil && (!bytes.Equal(before, registrySnapshot(t, c)) || fzCounter(c) != counter) {
			t.Fatalf("LOAD rejected with %04X changed the registry", s)
		}
		return
	}
	if c.st.Channels[0].Load != nil {
		// Not the last block: the fuzz load file always ends with one.
		t.Fatalf("LOAD accepted but the load is still open")
	}
	if e == nil || e.Kind != KindELF || !aidEq(e.SD, sd) {
		t.Fatalf("LOAD accepted but ELF %X not registered under %X", elf, sd)
	}
	if dm {
		checkConfirmation(t, "LOAD", out, counter, func(cd []byte) []byte {
			if inst != nil {
				return command.CombinedReceiptInput(cd, elf, inst.Instance, sd)
			}
			return command.LoadReceiptInput(cd, elf, sd)
		})
	} else if !bytes.Equal(out, []byte{0x00}) {
		t.Fatalf("LOAD answered %X, want 00", out)
	}
	objs, err := tlv.ParseWith(whole, tlv.Options{Accept80As128: true})
	lfdb, found := tlv.Find(objs, 0xC4)
	if err != nil || !found {
		t.Fatalf("LOAD accepted a load file without an LFDB: %X", whole)
	}
	modules, version, isCAP := parseCAP(lfdb.Value)
	if e.OpaqueModules == isCAP || !bytes.Equal(e.Version, version) || len(e.Modules) != len(modules) {
		t.Fatalf("loaded ELF: opaque %v version %X modules %X, CAP parse %v %X %X", e.OpaqueModules, e.Version, e.Modules, isCAP, version, modules)
	}
	for i := range modules {
		if !bytes.Equal(e.Modules[i], modules[i]) {
			t.Fatalf("loaded ELF module %d %X, want %X", i, e.Modules[i], modules[i])
		}
	}
}
