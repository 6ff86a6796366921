package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
	"github.com/tsmhub/tsmhub/pkg/spclient"
)

// Script files of `tsmctl converse`
//
// One command per line. Blank lines and lines starting with # are ignored,
// and so is everything after a # that follows whitespace. A line is either a
// raw C-APDU in hex (spaces allowed), sent as is, or a directive:
//
//	select <aid>                      SELECT by AID: 00A40400 Lc AID 00
//	initialize-update [kvn]           INITIALIZE UPDATE for key version kvn (hex,
//	                                  default --kvn) with a random host challenge:
//	                                  starts the SCP03 session
//	external-authenticate [level]     EXTERNAL AUTHENTICATE at security level
//	                                  (hex: 00 01 03 11 13 33, default --level)
//	secure <hex APDU>                 the plain APDU wrapped in the session
//	                                  (C-MAC, C-DEC as the level says)
//	get-status <p1>                   secured GET STATUS P1 (hex: 80 40 20 10),
//	                                  P2=02, data 4F00
//	store-data <hex data>             secured STORE DATA, last block (P1=80, P2=00)
//	put-key <old-kvn> <new-kvn> <enc:mac:dek>
//	                                  secured PUT KEY (key rotation): replaces key
//	                                  set old-kvn (00 adds a set) by new-kvn with
//	                                  the three AES keys, encrypted under the
//	                                  session's Key-DEK, with KCVs
//
// SCP03 needs the card's INITIALIZE UPDATE response before it can build
// EXTERNAL AUTHENTICATE, so directives are resolved script by script, after
// the previous script's responses came back: initialize-update ends one
// script, external-authenticate and the secured commands go in a later one.
// Everything is checked before the conversation begins: hex, APDU syntax,
// directive arguments, and that the directives come in a possible order.

// stepKind says what a script line produces.
type stepKind int

const (
	stepRaw stepKind = iota
	stepSelect
	stepInitUpdate
	stepExtAuth
	stepSecure
	stepGetStatus
	stepStoreData
	stepPutKey
)

// step is one parsed line of a script file.
type step struct {
	// File and Line locate the step for messages.
	File string
	Line int
	Kind stepKind
	// Display is the line as printed back: never key material.
	Display string
	// APDU is the raw command, or the plain command a directive builds.
	APDU []byte
	// KVN and Level are set when the directive names them; otherwise the
	// converse defaults apply.
	KVN      byte
	HasKVN   bool
	Level    byte
	HasLevel bool
	// OldKVN, NewKVN and Keys are the put-key arguments.
	OldKVN, NewKVN byte
	Keys           scp03.StaticKeys
}

// secured reports whether the step's command travels wrapped in the session.
func (s *step) secured() bool {
	switch s.Kind {
	case stepSecure, stepGetStatus, stepStoreData, stepPutKey:
		return true
	}
	return false
}

// needsSession reports whether the step needs SCP03 keys.
func (s *step) needsSession() bool {
	return s.Kind == stepInitUpdate || s.Kind == stepExtAuth || s.secured()
}

func (s *step) where() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// script is one parsed script file; it becomes one send-script request.
type script struct {
	Name  string
	Steps []*step
}

// loadScript reads and parses a script file.
func loadScript(path string) (*script, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseScript(path, f)
}

// parseScript parses a script; the error lists every bad line as
// name:line: what is wrong.
func parseScript(name string, r io.Reader) (*script, error) {
	sc := &script{Name: name}
	var errs []error
	in := bufio.NewScanner(r)
	in.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; in.Scan(); n++ {
		line := stripComment(in.Text())
		if line == "" {
			continue
		}
		st, err := parseLine(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, n, err))
			continue
		}
		st.File, st.Line = name, n
		sc.Steps = append(sc.Steps, st)
	}
	if err := in.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	if len(errs) == 0 && len(sc.Steps) == 0 {
		errs = append(errs, fmt.Errorf("%s: no commands (every line is blank or a comment)", name))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return sc, nil
}

// stripComment drops a whole-line comment or a " # ..." tail and trims.
func stripComment(line string) string {
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "#") {
		return ""
	}
	for i := 1; i < len(line); i++ {
		if line[i] == '#' && (line[i-1] == ' ' || line[i-1] == '\t') {
			return strings.TrimSpace(line[:i])
		}
	}
	return line
}

// parseLine parses one non-empty line.
func parseLine(line string) (*step, error) {
	fields := strings.Fields(line)
	word, args := strings.ToLower(fields[0]), fields[1:]
	switch word {
	case "select":
		if len(args) != 1 {
			return nil, errors.New("select takes one AID: select A000000151000000")
		}
		aid, err := hexArg("AID", args[0])
		if err != nil {
			return nil, err
		}
		if len(aid) < 5 || len(aid) > 16 {
			return nil, fmt.Errorf("AID of %d bytes: an AID has 5 to 16 bytes", len(aid))
		}
		cmd := apdu.Command{CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x00, Data: aid, Le: 0}
		return &step{Kind: stepSelect, Display: "select " + upper(aid), APDU: cmd.Bytes()}, nil
	case "initialize-update":
		st := &step{Kind: stepInitUpdate, Display: "initialize-update"}
		if len(args) > 1 {
			return nil, errors.New("initialize-update takes at most a key version: initialize-update 30")
		}
		if len(args) == 1 {
			kvn, err := byteArg("key version", args[0])
			if err != nil {
				return nil, err
			}
			if kvn > 0x7F {
				return nil, fmt.Errorf("key version %02X: use 00 (default key set) to 7F", kvn)
			}
			st.KVN, st.HasKVN = kvn, true
			st.Display += fmt.Sprintf(" %02X", kvn)
		}
		return st, nil
	case "external-authenticate":
		st := &step{Kind: stepExtAuth, Display: "external-authenticate"}
		if len(args) > 1 {
			return nil, errors.New("external-authenticate takes at most a security level: external-authenticate 33")
		}
		if len(args) == 1 {
			level, err := byteArg("security level", args[0])
			if err != nil {
				return nil, err
			}
			if !scp03.ValidLevel(level) {
				return nil, fmt.Errorf("security level %02X: use 00, 01, 03, 11, 13 or 33", level)
			}
			st.Level, st.HasLevel = level, true
			st.Display += fmt.Sprintf(" %02X", level)
		}
		return st, nil
	case "secure":
		if len(args) == 0 {
			return nil, errors.New("secure needs the plain APDU: secure 80CA006600")
		}
		b, err := commandArg(strings.Join(args, ""))
		if err != nil {
			return nil, err
		}
		return &step{Kind: stepSecure, Display: "secure " + upper(b), APDU: b}, nil
	case "get-status":
		if len(args) != 1 {
			return nil, errors.New("get-status takes P1: get-status 40 (80 ISD, 40 applications and SDs, 20 load files, 10 load files and modules)")
		}
		p1, err := byteArg("P1", args[0])
		if err != nil {
			return nil, err
		}
		switch p1 {
		case 0x80, 0x40, 0x20, 0x10:
		default:
			return nil, fmt.Errorf("GET STATUS P1 %02X: use 80, 40, 20 or 10", p1)
		}
		cmd := apdu.Command{CLA: 0x80, INS: 0xF2, P1: p1, P2: 0x02, Data: []byte{0x4F, 0x00}, Le: 0}
		return &step{Kind: stepGetStatus, Display: fmt.Sprintf("get-status %02X", p1), APDU: cmd.Bytes()}, nil
	case "store-data":
		if len(args) == 0 {
			return nil, errors.New("store-data needs the data: store-data DF0103010203")
		}
		data, err := hexArg("STORE DATA data", strings.Join(args, ""))
		if err != nil {
			return nil, err
		}
		if len(data) == 0 || len(data) > 239 {
			return nil, fmt.Errorf("STORE DATA data of %d bytes: 1 to 239 bytes fit a wrapped short APDU", len(data))
		}
		cmd := apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x80, P2: 0x00, Data: data, Le: apdu.LeAbsent}
		return &step{Kind: stepStoreData, Display: fmt.Sprintf("store-data (%d bytes)", len(data)), APDU: cmd.Bytes()}, nil
	case "put-key":
		if len(args) != 3 {
			return nil, errors.New("put-key takes the old key version, the new one and the keys: put-key 30 31 <enc>:<mac>:<dek>")
		}
		oldKVN, err := byteArg("old key version", args[0])
		if err != nil {
			return nil, err
		}
		newKVN, err := byteArg("new key version", args[1])
		if err != nil {
			return nil, err
		}
		if oldKVN > 0x7F || newKVN == 0 || newKVN > 0x7F {
			return nil, fmt.Errorf("key versions %02X -> %02X: old 00 (add a set) to 7F, new 01 to 7F", oldKVN, newKVN)
		}
		keys, err := parseKeyTriple(args[2])
		if err != nil {
			return nil, err
		}
		return &step{Kind: stepPutKey, OldKVN: oldKVN, NewKVN: newKVN, Keys: keys,
			Display: fmt.Sprintf("put-key %02X -> %02X (3 AES-%d keys)", oldKVN, newKVN, 8*len(keys.ENC))}, nil
	}
	if !isHexish(line) {
		return nil, fmt.Errorf("unknown directive %q: use select, initialize-update, external-authenticate, secure, get-status, store-data, put-key or a C-APDU in hex", fields[0])
	}
	b, err := commandArg(line)
	if err != nil {
		return nil, err
	}
	return &step{Kind: stepRaw, Display: upper(b), APDU: b}, nil
}

// isHexish reports whether a line looks like an APDU rather than a
// misspelt directive.
func isHexish(s string) bool {
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'f', r >= 'A' && r <= 'F', r == ' ', r == '\t', r == ':':
		default:
			return false
		}
	}
	return true
}

func commandArg(s string) ([]byte, error) {
	b, err := apdu.DecodeHex(s)
	if err != nil {
		return nil, fmt.Errorf("C-APDU: %w", err)
	}
	if _, err := apdu.Parse(b); err != nil {
		return nil, fmt.Errorf("C-APDU %s: %w", upper(b), err)
	}
	return b, nil
}

func hexArg(what, s string) ([]byte, error) {
	b, err := apdu.DecodeHex(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

func byteArg(what, s string) (byte, error) {
	b, err := apdu.DecodeHex(s)
	if err != nil || len(b) != 1 {
		return 0, fmt.Errorf("%s %q: want one byte in hex, e.g. 30", what, s)
	}
	return b[0], nil
}

// parseKeyTriple reads enc:mac:dek, three AES keys in hex of one length.
// Errors never repeat the key text.
func parseKeyTriple(s string) (scp03.StaticKeys, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return scp03.StaticKeys{}, errors.New("keys: want enc:mac:dek, three AES keys in hex separated by colons")
	}
	var ks [3][]byte
	for i, name := range []string{"Key-ENC", "Key-MAC", "Key-DEK"} {
		b, err := apdu.DecodeHex(parts[i])
		if err != nil {
			return scp03.StaticKeys{}, fmt.Errorf("keys: %s is not hex", name)
		}
		if n := len(b); n != 16 && n != 24 && n != 32 {
			return scp03.StaticKeys{}, fmt.Errorf("keys: %s has %d bytes; AES keys have 16, 24 or 32", name, n)
		}
		ks[i] = b
	}
	if len(ks[0]) != len(ks[1]) || len(ks[0]) != len(ks[2]) {
		return scp03.StaticKeys{}, errors.New("keys: ENC, MAC and DEK must have the same length")
	}
	return scp03.StaticKeys{ENC: ks[0], MAC: ks[1], DEK: ks[2]}, nil
}

// checkOrder verifies, before anything is sent, that the session directives
// of all scripts come in an order SCP03 allows: external-authenticate in a
// script after the one with initialize-update, secured commands after
// external-authenticate, and keys given when any directive needs them.
func checkOrder(scripts []*script, haveKeys bool) error {
	const (
		none = iota
		initSent
		authenticated
	)
	state, initScript := none, -1
	var errs []error
	for i, sc := range scripts {
		for _, st := range sc.Steps {
			if st.needsSession() && !haveKeys {
				errs = append(errs, fmt.Errorf("%s: %s needs the SD keys: give --sd-master-key or --keys", st.where(), directiveName(st)))
				continue
			}
			switch {
			case st.Kind == stepInitUpdate:
				state, initScript = initSent, i
			case st.Kind == stepExtAuth:
				switch {
				case state != initSent:
					errs = append(errs, fmt.Errorf("%s: external-authenticate needs an initialize-update before it", st.where()))
				case initScript == i:
					errs = append(errs, fmt.Errorf("%s: external-authenticate needs the card's INITIALIZE UPDATE response: "+
						"move it to a later --script than the initialize-update", st.where()))
				}
				state = authenticated
			case st.secured() && state != authenticated:
				errs = append(errs, fmt.Errorf("%s: %s needs an open session: put initialize-update in an earlier script and external-authenticate before it", st.where(), directiveName(st)))
			}
		}
	}
	return errors.Join(errs...)
}

func directiveName(st *step) string {
	return map[stepKind]string{stepInitUpdate: "initialize-update", stepExtAuth: "external-authenticate",
		stepSecure: "secure", stepGetStatus: "get-status", stepStoreData: "store-data", stepPutKey: "put-key"}[st.Kind]
}

// planned is one command of a resolved script.
type planned struct {
	Step *step
	// Command is the C-APDU as sent.
	Command []byte
	// Wrapped is set for secured commands.
	Wrapped *spclient.Wrapped
	// Expect is the response data a put-key must get back.
	Expect []byte
}

// session resolves directives into commands and checks responses, holding
// the SCP03 channel between the scripts of one conversation.
type session struct {
	channel *spclient.SecureChannel // nil without keys
	kvn     byte
	level   byte
}

// resolve turns a script into the commands to send now.
func (s *session) resolve(sc *script) ([]planned, error) {
	out := make([]planned, 0, len(sc.Steps))
	for _, st := range sc.Steps {
		p := planned{Step: st}
		var err error
		switch st.Kind {
		case stepRaw, stepSelect:
			p.Command = st.APDU
		case stepInitUpdate:
			kvn := s.kvn
			if st.HasKVN {
				kvn = st.KVN
			}
			p.Command, err = s.channel.InitializeUpdate(kvn)
		case stepExtAuth:
			level := s.level
			if st.HasLevel {
				level = st.Level
			}
			p.Command, err = s.channel.ExternalAuthenticate(level)
		case stepSecure, stepGetStatus, stepStoreData:
			p.Wrapped, err = s.channel.Wrap(st.APDU)
		case stepPutKey:
			var plain []byte
			plain, p.Expect, err = s.channel.PutKey(st.OldKVN, st.NewKVN, st.Keys)
			if err == nil {
				p.Wrapped, err = s.channel.Wrap(plain)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", st.where(), st.Display, err)
		}
		if p.Wrapped != nil {
			p.Command = p.Wrapped.Command
		}
		out = append(out, p)
	}
	return out, nil
}

// check processes the response to a planned command: INITIALIZE UPDATE
// responses open the session, EXTERNAL AUTHENTICATE must be 9000, secured
// responses are verified and decrypted. It returns notes to print and an
// error when the response breaks the session.
func (s *session) check(p planned, rapdu []byte) (notes []string, err error) {
	switch {
	case p.Step.Kind == stepInitUpdate:
		iu, err := s.channel.ProcessInitializeUpdateResponse(rapdu)
		if err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("card cryptogram ok: KVN %02X, i %02X, KDD %X", iu.KVN, iu.I, iu.KDD)}, nil
	case p.Step.Kind == stepExtAuth:
		if err := spclient.CheckExternalAuthenticateResponse(rapdu); err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("session open at level %02X", s.channel.Level())}, nil
	case p.Wrapped != nil:
		u, err := s.channel.Unwrap(p.Wrapped, rapdu)
		if err != nil {
			return nil, err
		}
		var note []string
		if u.RMACVerified {
			note = append(note, "R-MAC ok")
		}
		if u.Decrypted {
			note = append(note, "decrypted")
		}
		text := fmt.Sprintf("plain %s %04X", upper(u.Data), u.SW)
		if len(note) > 0 {
			text += "  " + strings.Join(note, ", ")
		}
		out := []string{text}
		if p.Expect != nil && u.SW == apdu.SWOK {
			if string(u.Data) != string(p.Expect) {
				return out, fmt.Errorf("PUT KEY answered %X, want key version and KCVs %X", u.Data, p.Expect)
			}
			out = append(out, "key check values ok")
		}
		return out, nil
	}
	return nil, nil
}

func upper(b []byte) string { return strings.ToUpper(fmt.Sprintf("%x", b)) }
