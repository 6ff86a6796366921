package card

import (
	"bytes"
	"io"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
)

// channel is the state of one open logical channel (GPC 11.1.4, 11.7).
type channel struct {
	// Selected is the AID of the application selected on the channel.
	Selected []byte `json:"selected"`
	// Session is the secure channel session of the selected SD (or of the
	// associated SD of the selected application).
	Session *session `json:"session,omitempty"`
	// PersoTarget names the application of a personalization session
	// (INSTALL [for personalization], GPC 11.11.1).
	PersoTarget []byte `json:"persoTarget,omitempty"`
	// StoreNext is the next expected STORE DATA block number (GPC 11.11.2.2).
	StoreNext int `json:"storeNext"`
	// Load is an ongoing load (INSTALL [for load] then LOAD blocks).
	Load *loadState `json:"load,omitempty"`
	// Chain collects the segments of a GP chained command (GPC 11.1.5.1).
	Chain *chainState `json:"chain,omitempty"`
	// Status is the GET STATUS continuation after 6310.
	Status *statusCursor `json:"status,omitempty"`
	// Pending holds response bytes (data || SW) not yet fetched with GET
	// RESPONSE (GPC 11.1.5.2).
	Pending []byte `json:"pending,omitempty"`
}

type chainState struct {
	CLA  byte   `json:"cla"`
	INS  byte   `json:"ins"`
	P2   byte   `json:"p2"`
	Data []byte `json:"data"`
}

// maxChained is the implementation limit of GP chaining (GPC 11.1.5.1).
const maxChained = 4096

// maxResponse is the largest short-APDU response data field.
const maxResponse = 256

// resetSessionState ends the secure channel and personalization and load
// sessions of a channel (GPC 10.2.3, 11.11.1).
func (ch *channel) resetSessionState() {
	ch.Session = nil
	ch.PersoTarget = nil
	ch.StoreNext = 0
	ch.Load = nil
	ch.Chain = nil
	ch.Status = nil
	ch.Pending = nil
}

// Reset is a card reset (power cycle or warm reset): logical channels 1-3 are
// closed, every secure channel ends, and channel 0 selects the default
// application again (GPC 11.1.4, 10.2.3).
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 1; i < len(c.st.Channels); i++ {
		c.st.Channels[i] = nil
	}
	c.st.Channels[0] = &channel{Selected: clone(c.st.defaultApp())}
}

// defaultApp is the application implicitly selected on channel 0: the ISD,
// or the holder of the Card Reset privilege (GPC 6.6.1).
func (st *state) defaultApp() []byte {
	for _, e := range st.Entries {
		if e.Kind == KindApp && e.Privileges.Has(PrivCardReset) && e.selectable() {
			return e.AID
		}
	}
	return ISDAID
}

// Transmit processes one command APDU and returns the response APDU (data ||
// SW1 SW2). It never panics: an internal failure is answered with 6F00.
func (c *Card) Transmit(capdu []byte) (resp []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			resp = []byte{0x6F, 0x00}
		}
	}()
	c.st.Exec++
	return c.process(capdu)
}

func sw(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// gpINS are the GlobalPlatform proprietary instructions (GPC 11.2-11.11).
var gpINS = map[byte]bool{0x50: true, 0x82: true, 0xE4: true, 0xE6: true, 0xE8: true, 0xD8: true,
	0xF2: true, 0xF0: true, 0xE2: true, 0x78: true, 0x7A: true}

// request is the context of one command.
type request struct {
	c    *Card
	st   *state
	ch   *channel
	chNo int
	// sel is the selected application; sd the SD processing the command
	// (sel itself, or the associated SD of an application).
	sel, sd *entry
	s       *session
	auth    bool
	cmd     apdu.Command
}

func (c *Card) process(capdu []byte) []byte {
	st := c.st
	cmd, err := apdu.Parse(capdu)
	if err != nil {
		return sw(apdu.SWWrongLength)
	}
	if !apdu.ValidCLA(cmd.CLA) {
		return sw(apdu.SWCLANotSupported)
	}
	chNo := apdu.LogicalChannel(cmd.CLA)
	if chNo < 0 || chNo >= len(st.Channels) {
		return sw(apdu.SWLogicalChannelNotSupported)
	}
	ch := st.Channels[chNo]
	if ch == nil {
		return sw(apdu.SWLogicalChannelNotSupported)
	}
	prop := apdu.IsProprietary(cmd.CLA)
	sm := apdu.IsSecureMessaging(cmd.CLA)
	if !prop && cmd.INS == 0xC0 {
		return getResponse(ch, cmd)
	}
	ch.Pending = nil
	if st.LifeCycle == CardTerminated && cmd.INS != 0xCA && cmd.INS != 0xCB {
		// GPC Table 11-1 and 5.1.1.5: only GET DATA in TERMINATED.
		if cmd.INS == 0xA4 {
			return sw(apdu.SWFunctionNotSupported)
		}
		return sw(apdu.SWConditionsNotSatisfied)
	}
	if ch.Chain != nil && !(prop && cmd.INS == ch.Chain.INS && cmd.CLA == ch.Chain.CLA && cmd.P2 == ch.Chain.P2) {
		// GPC 11.1.5.1: the chain must continue with the same header.
		ch.Chain = nil
		return sw(apdu.SWConditionsNotSatisfied)
	}
	r := &request{c: c, st: st, ch: ch, chNo: chNo, cmd: cmd}
	r.sel = st.find(ch.Selected)
	if r.sel == nil {
		// The selected application was deleted (from another channel).
		r.sel = st.isd()
		ch.Selected = clone(r.sel.AID)
	}
	r.sd = r.sel
	if !r.sel.isSD() {
		if p := st.find(r.sel.SD); p != nil {
			r.sd = p
		}
	}
	if !prop {
		if sm {
			return sw(apdu.SWSecureMessagingNotSupported)
		}
		switch cmd.INS {
		case 0xA4:
			return r.selectCmd()
		case 0x70:
			return r.manageChannel()
		case 0xCA, 0xCB:
			return r.finish(r.getData())
		}
		if gpINS[cmd.INS] {
			return sw(apdu.SWCLANotSupported)
		}
		return sw(apdu.SWINSNotSupported)
	}
	switch cmd.INS {
	case 0x50:
		if sm {
			return sw(apdu.SWCLANotSupported)
		}
		return r.finish(r.initializeUpdate())
	case 0x82:
		return r.finish(r.externalAuthenticate())
	case 0xA4, 0x70:
		return sw(apdu.SWCLANotSupported)
	}
	if !gpINS[cmd.INS] && cmd.INS != 0xCA && cmd.INS != 0xCB {
		return sw(apdu.SWINSNotSupported)
	}
	// GP command chaining (GPC 11.1.5.1): DELETE, INSTALL and PUT KEY with
	// P1 b8 = more commands. Segments are collected before unwrapping because
	// the C-MAC and encryption cover the unsegmented command.
	if (cmd.INS == 0xE4 || cmd.INS == 0xE6 || cmd.INS == 0xD8) && cmd.P1&0x80 != 0 {
		if ch.Chain == nil {
			ch.Chain = &chainState{CLA: cmd.CLA, INS: cmd.INS, P2: cmd.P2}
		}
		if len(ch.Chain.Data)+len(cmd.Data) > maxChained {
			ch.Chain = nil
			return sw(apdu.SWIncorrectP1P2)
		}
		ch.Chain.Data = append(ch.Chain.Data, cmd.Data...)
		return sw(apdu.SWOK)
	}
	if ch.Chain != nil {
		cmd.Data = append(ch.Chain.Data, cmd.Data...)
		ch.Chain = nil
	}
	// Secure channel gate (GPC 10.2.3, Amd D 5.6).
	s := ch.Session
	secured := false
	switch {
	case s == nil:
		if sm {
			return sw(apdu.SWSecurityNotSatisfied)
		}
	case s.initiated():
		// Anything but EXTERNAL AUTHENTICATE ends a half-open session.
		ch.Session, s = nil, nil
		if sm {
			return sw(apdu.SWSecurityNotSatisfied)
		}
	default:
		// Authenticated or aborted: the shared session checks the command
		// against its level (C-MAC, C-DECRYPTION) and rejects everything
		// once aborted, until a new INITIALIZE UPDATE.
		plain, err := s.unwrap(cmd)
		if err != nil {
			ch.PersoTarget = nil
			ch.StoreNext = 0
			ch.Load = nil
			return sw(apdu.SWOf(err, apdu.SWSecurityNotSatisfied))
		}
		cmd = plain
		secured = sm
	}
	c.lastPlain = cmd.Bytes()
	r.cmd = cmd
	r.s = s
	r.auth = s.authenticated()
	data, status := r.dispatch()
	if secured {
		return r.chunk(s.wrapResponse(data, status))
	}
	return r.finish(data, status)
}

// finish builds the R-APDU, splitting data longer than 256 bytes with 61xx
// and GET RESPONSE (GPC 11.1.5.2).
func (r *request) finish(data []byte, status uint16) []byte {
	out := make([]byte, 0, len(data)+2)
	out = append(append(out, data...), byte(status>>8), byte(status))
	return r.chunk(out)
}

func (r *request) chunk(full []byte) []byte {
	if len(full)-2 <= maxResponse {
		return full
	}
	first := append([]byte{}, full[:maxResponse]...)
	r.ch.Pending = append([]byte{}, full[maxResponse:]...)
	return append(first, 0x61, lenByte(len(r.ch.Pending)-2))
}

func lenByte(n int) byte {
	if n >= 256 {
		return 0
	}
	return byte(n)
}

func getResponse(ch *channel, cmd apdu.Command) []byte {
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return sw(apdu.SWIncorrectP1P2)
	}
	if len(ch.Pending) < 2 {
		ch.Pending = nil
		return sw(apdu.SWConditionsNotSatisfied)
	}
	rest := ch.Pending
	if len(rest)-2 <= maxResponse {
		ch.Pending = nil
		return rest
	}
	first := append([]byte{}, rest[:maxResponse]...)
	ch.Pending = rest[maxResponse:]
	return append(first, 0x61, lenByte(len(ch.Pending)-2))
}

// dispatch runs a GP proprietary command after the secure channel gate.
func (r *request) dispatch() ([]byte, uint16) {
	// Card life-cycle gating (GPC Table 11-1, 9.3.5): CARD_LOCKED allows GET
	// DATA, and GET STATUS / SET STATUS on an SD with AM or Card Lock.
	if r.st.LifeCycle == CardLocked {
		switch r.cmd.INS {
		case 0xCA, 0xCB:
		case 0xF2, 0xF0:
			if !r.sd.Privileges.Has(PrivAuthorizedManagement) && !r.sd.Privileges.Has(PrivCardLock) && r.sd.Kind != KindISD {
				return nil, apdu.SWConditionsNotSatisfied
			}
		default:
			return nil, apdu.SWConditionsNotSatisfied
		}
	}
	if (r.sel.locked() || r.sd.locked()) && r.cmd.INS != 0xCA && r.cmd.INS != 0xCB {
		// A LOCKED application or SD that is still selected (it was locked
		// from another channel, or locked itself) processes nothing more
		// (GPC 5.3.1.4, 5.3.2.4).
		return nil, apdu.SWConditionsNotSatisfied
	}
	if !r.sel.isSD() {
		return r.appCommand()
	}
	switch r.cmd.INS {
	case 0xCA, 0xCB:
		return r.getData()
	}
	// GPC Table 11-2: every other GP command needs AUTHENTICATED.
	if !r.auth {
		return nil, apdu.SWSecurityNotSatisfied
	}
	switch r.cmd.INS {
	case 0xF2:
		return r.getStatus()
	case 0xE2:
		return r.storeData()
	case 0xD8:
		return r.putKey()
	case 0xE6:
		return r.install()
	case 0xE8:
		return r.load()
	case 0xE4:
		return r.deleteCmd()
	case 0xF0:
		return r.setStatus()
	}
	return nil, apdu.SWINSNotSupported
}

// appCommand is the generic application model: it accepts personalization
// data with STORE DATA under its SD's secure channel and nothing else.
func (r *request) appCommand() ([]byte, uint16) {
	switch r.cmd.INS {
	case 0xE2:
		if !r.auth {
			return nil, apdu.SWSecurityNotSatisfied
		}
		return r.storeToApp(r.sel)
	case 0xCA, 0xCB:
		return nil, apdu.SWReferencedDataNotFound
	}
	return nil, apdu.SWINSNotSupported
}

// readChallenge reads n random bytes from the test source or Rand.
func (c *Card) readChallenge(n int) ([]byte, bool) {
	b := make([]byte, n)
	src := c.challenge
	if src == nil {
		src = c.rand
	}
	if _, err := io.ReadFull(src, b); err != nil {
		return nil, false
	}
	return b, true
}

// inHierarchy reports whether e is in the sub-hierarchy of sd (sd itself
// included), following associated SDs (GPC 6.5, 9.1).
func (st *state) inHierarchy(e, sd *entry) bool {
	for cur, n := e, 0; cur != nil && n < 64; n++ {
		if bytes.Equal(cur.AID, sd.AID) {
			return true
		}
		if cur.SD == nil {
			return false
		}
		cur = st.find(cur.SD)
	}
	return false
}
