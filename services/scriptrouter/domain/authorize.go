package domain

import (
	"fmt"
	"strings"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// SPScope is what an SP owns on one SE: the AIDs it may SELECT. The router
// builds it from the registry projection (the SP's record, its catalog
// entries and the SDs pre-issued on the SE).
type SPScope struct {
	// SPID names the SP in refusal messages.
	SPID string
	// SDAIDs are the SP's security domain AIDs (uppercase hex): the one of its
	// registry record and any pre-issued for it on this SE.
	SDAIDs []string
	// InstanceAIDs are the AIDs of the SP's service instances (uppercase hex).
	InstanceAIDs []string
}

func (s SPScope) isSD(aid string) bool       { return containsFold(s.SDAIDs, aid) }
func (s SPScope) isInstance(aid string) bool { return containsFold(s.InstanceAIDs, aid) }

func containsFold(list []string, aid string) bool {
	for _, a := range list {
		if a != "" && strings.EqualFold(a, aid) {
			return true
		}
	}
	return false
}

// Selection is what the router believes is selected on a logical channel.
// Only the kind matters to the rule: the router never lets an SP select
// anything but its own SD and instances, so "other" is only ever the ISD the
// card starts with (or what a channel opened from it inherits).
type Selection string

// Selections of a logical channel.
const (
	// SelectedISD is the card's default: the issuer security domain (or any
	// application that is not the SP's).
	SelectedISD Selection = "isd"
	// SelectedOwnSD is the SP's own security domain.
	SelectedOwnSD Selection = "sd"
	// SelectedOwnInstance is one of the SP's service instances.
	SelectedOwnInstance Selection = "instance"
)

// MaxLogicalChannel is the highest logical channel number (ISO 7816-4: 0-19).
const MaxLogicalChannel = 19

// CardState is the router's view of the card during a conversation: the
// selection on each open logical channel. It carries across the scripts of a
// conversation; a conversation starts with a reset card (NewCardState).
type CardState struct {
	// Channels maps each open logical channel to its selection; a channel
	// absent from the map is closed.
	Channels map[int]Selection `json:"channels"`
	// SDs maps a channel with the SP's own SD selected to that SD's AID
	// (rotation detection: which SD a PUT KEY went to). States stored before
	// it existed lack it; KeyPuts then falls back to the SP's only SD.
	SDs map[int]string `json:"sds,omitempty"`
	// Levels maps a channel with an SCP session the SP opened to the
	// security level of its EXTERNAL AUTHENTICATE (P1, in clear): without
	// C-DECRYPTION the router can read the data of the commands that follow.
	Levels map[int]byte `json:"levels,omitempty"`
	// UpdatedAt is when a script last changed it (pruning).
	UpdatedAt time.Time `json:"updatedAt"`
}

// NewCardState is a freshly reset card: the ISD selected on the basic
// channel, the supplementary channels closed.
func NewCardState() CardState {
	return CardState{Channels: map[int]Selection{0: SelectedISD}}
}

// clone returns a copy the rule may change; the zero CardState (nothing
// stored) is a reset card. The basic channel can never be closed, so a state
// without channels can only be the zero one.
func (s CardState) clone() CardState {
	if len(s.Channels) == 0 {
		return NewCardState()
	}
	c := CardState{Channels: make(map[int]Selection, len(s.Channels)), UpdatedAt: s.UpdatedAt}
	for ch, sel := range s.Channels {
		c.Channels[ch] = sel
	}
	for ch, aid := range s.SDs {
		c.setSD(ch, aid)
	}
	for ch, l := range s.Levels {
		c.setLevel(ch, l, true)
	}
	return c
}

// setLevel records (or, with ok false, forgets) the session level of ch.
func (s *CardState) setLevel(ch int, level byte, ok bool) {
	if !ok {
		delete(s.Levels, ch)
		return
	}
	if s.Levels == nil {
		s.Levels = map[int]byte{}
	}
	s.Levels[ch] = level
}

// clearData returns the data field of c as the card will see it when the
// router can read it: the command without secure messaging, or in a session
// the SP opened at a level without C-DECRYPTION (the data less its 8-byte
// C-MAC). ok is false when the data may be encrypted.
func (s *CardState) clearData(ch int, c apdu.Command) ([]byte, bool) {
	if !apdu.IsSecureMessaging(c.CLA) {
		return c.Data, true
	}
	level, known := s.Levels[ch]
	if !known || level&0x02 != 0 || len(c.Data) < 8 {
		return nil, false
	}
	return c.Data[:len(c.Data)-8], true
}

// targetOutsideScope checks the target of DELETE and SET STATUS when the
// router can read it (DESIGN.md 6: none outside the SP's own SD and
// instances; a DELETE carrying a token, tag 9E, is delegated management and
// left to the card). It returns why the command is refused, or "".
func (s *CardState) targetOutsideScope(scope SPScope, ch int, c apdu.Command) string {
	data, ok := s.clearData(ch, c)
	if !ok {
		return ""
	}
	var target []byte
	switch c.INS {
	case insDelete:
		objs, err := tlv.Parse(data)
		if err != nil {
			return ""
		}
		for _, o := range objs {
			switch o.Tag {
			case 0x4F:
				target = o.Value
			case 0x9E:
				return ""
			}
		}
	case insSetStatus:
		if c.P1 == 0x80 {
			return fmt.Sprintf("SET STATUS of the card (P1 80) is not allowed to %s", scope.SPID)
		}
		target = data
	}
	if len(target) == 0 {
		return ""
	}
	aid := fmt.Sprintf("%X", target)
	if scope.isSD(aid) || scope.isInstance(aid) {
		return ""
	}
	return fmt.Sprintf("%s of an AID that is not %s's security domain or one of its service instances (%s)",
		gpCommandNames[c.INS], scope.SPID, aid)
}

// setSD records the own SD selected on ch ("" forgets it).
func (s *CardState) setSD(ch int, aid string) {
	if aid == "" {
		delete(s.SDs, ch)
		return
	}
	if s.SDs == nil {
		s.SDs = map[int]string{}
	}
	s.SDs[ch] = aid
}

// Instruction bytes the rule distinguishes.
const (
	insSelect         = 0xA4
	insManageChannel  = 0x70
	insInstall        = 0xE6
	insLoad           = 0xE8
	insDelete         = 0xE4
	insSetStatus      = 0xF0
	insPutKey         = 0xD8
	insStoreData      = 0xE2
	insGetStatus      = 0xF2
	insInitUpdate     = 0x50
	insExternalAuth   = 0x82
	p1SelectByName    = 0x04
	p1ManageOpen      = 0x00
	p1ManageClose     = 0x80
	p2OccurrenceMask  = 0x03
	p2FirstOccurrence = 0x00
)

var gpCommandNames = map[byte]string{
	insInstall: "INSTALL", insLoad: "LOAD", insDelete: "DELETE", insSetStatus: "SET STATUS",
	insPutKey: "PUT KEY", insStoreData: "STORE DATA", insGetStatus: "GET STATUS",
	insInitUpdate: "INITIALIZE UPDATE", insExternalAuth: "EXTERNAL AUTHENTICATE",
}

// Authorize applies DESIGN.md section 6 to a validated script, command by
// command in order, starting from the card state the previous scripts of the
// conversation left:
//   - SELECT by name (P1 04) only of the SP's own SD or instances, first
//     occurrence, exact AID; SELECT with no AID (the ISD) is refused;
//   - MANAGE CHANNEL opens and closes supplementary channels (a channel
//     opened from the basic channel starts on the ISD, one opened from a
//     supplementary channel inherits its selection);
//   - INSTALL, LOAD, DELETE, SET STATUS, PUT KEY, GET STATUS, INITIALIZE
//     UPDATE and EXTERNAL AUTHENTICATE only with the own SD selected on the
//     command's channel; STORE DATA also with an own instance selected;
//   - DELETE and SET STATUS only of the own SD or instances when the router
//     can read their data (no secure messaging, or an SP session whose
//     EXTERNAL AUTHENTICATE level has no C-DECRYPTION); SET STATUS of the
//     card never; a DELETE with a token (9E) is left to the card;
//   - anything else (GET DATA, GET RESPONSE, application commands, SELECT of
//     files inside an application) only with an own SD or instance selected.
//
// It returns the state after the script (assuming each command does what it
// asks) or a NOT_ALLOWED Rejection naming the first refused command; state is
// not modified. Headers are in clear even in an SCP03 session (only data
// fields are encrypted), so the rule sees all it needs. Messages name the
// AID the SP sent, never another SP's AIDs.
func Authorize(scope SPScope, state CardState, commands []Command) (CardState, *Rejection) {
	next, _, rej := AuthorizeScript(scope, state, commands)
	return next, rej
}

// KeyPut is a PUT KEY an SP sends with its own SD selected: if the card
// answers 9000 the SP has replaced (or added) keys of that SD, and the
// router's copy of its temporary keys is void.
type KeyPut struct {
	// Index of the PUT KEY in the script.
	Index int `json:"index"`
	// SDAID is the SD selected on the command's channel (uppercase hex).
	SDAID string `json:"sdAid"`
	// KeyVersion is the new key version when the router can read it (a PUT
	// KEY without secure messaging: the first data byte), else 0.
	KeyVersion int `json:"keyVersion"`
	// InitializeUpdate marks an INITIALIZE UPDATE on the SP's SD rather than
	// a PUT KEY: its response carries the SD's current key version in clear,
	// which is how the router learns the version an encrypted PUT KEY set.
	InitializeUpdate bool `json:"initializeUpdate,omitempty"`
}

// AuthorizeScript is Authorize that also lists the script's PUT KEY
// commands on the SP's own SD (rotation detection).
func AuthorizeScript(scope SPScope, state CardState, commands []Command) (CardState, []KeyPut, *Rejection) {
	next := state.clone()
	var puts []KeyPut
	for _, c := range commands {
		if c.APDU.INS == insPutKey || c.APDU.INS == insInitUpdate {
			if ch := apdu.LogicalChannel(c.APDU.CLA); ch >= 0 && next.Channels[ch] == SelectedOwnSD {
				put := KeyPut{Index: c.Index, SDAID: next.SDs[ch], InitializeUpdate: c.APDU.INS == insInitUpdate}
				if put.SDAID == "" && len(scope.SDAIDs) == 1 {
					put.SDAID = strings.ToUpper(scope.SDAIDs[0])
				}
				if data, ok := next.clearData(ch, c.APDU); ok && len(data) > 0 && !put.InitializeUpdate {
					put.KeyVersion = int(data[0])
				}
				if put.SDAID != "" {
					puts = append(puts, put)
				}
			}
		}
		if reason := next.apply(scope, c.APDU); reason != "" {
			return state, nil, &Rejection{
				Err: contract.Errorf(contract.CodeNotAllowed, "command %d: %s", c.Index, reason),
				Failed: []contract.ScriptFailure{{Index: c.Index, Command: failedCommand(c),
					Reason: reason}},
			}
		}
	}
	return next, puts, nil
}

// failedCommand is what a refusal echoes of the command: the whole command
// for SELECT (its data is the AID the SP sent), the header otherwise (the
// data of PUT KEY or STORE DATA may carry wrapped keys).
func failedCommand(c Command) string {
	if c.APDU.INS == insSelect {
		return c.Hex
	}
	return fmt.Sprintf("%02X%02X%02X%02X", c.APDU.CLA, c.APDU.INS, c.APDU.P1, c.APDU.P2)
}

// apply checks one command against the state and updates the state; it
// returns why the command is refused, or "".
func (s *CardState) apply(scope SPScope, c apdu.Command) string {
	ch := apdu.LogicalChannel(c.CLA)
	if ch < 0 {
		return fmt.Sprintf("CLA %02X codes no logical channel", c.CLA)
	}
	if c.INS == insManageChannel {
		return s.manageChannel(ch, c)
	}
	sel, open := s.Channels[ch]
	if !open {
		return fmt.Sprintf("logical channel %d is not open: open it with MANAGE CHANNEL first", ch)
	}
	if c.INS == insSelect && c.P1 == p1SelectByName {
		return s.selectByName(scope, ch, c)
	}
	if name, ok := gpCommandNames[c.INS]; ok {
		if sel == SelectedOwnSD || (c.INS == insStoreData && sel == SelectedOwnInstance) {
			switch c.INS {
			case insInitUpdate:
				s.setLevel(ch, 0, false)
			case insExternalAuth:
				s.setLevel(ch, c.P1, true)
			case insDelete, insSetStatus:
				return s.targetOutsideScope(scope, ch, c)
			}
			return ""
		}
		where := scope.SPID + "'s security domain"
		if c.INS == insStoreData {
			where += " or one of its service instances"
		}
		return fmt.Sprintf("%s on logical channel %d is only allowed with %s selected: SELECT it first", name, ch, where)
	}
	if sel == SelectedOwnSD || sel == SelectedOwnInstance {
		return ""
	}
	return fmt.Sprintf("INS %02X on logical channel %d is only allowed with %s's security domain or one of its service instances selected: SELECT it first",
		c.INS, ch, scope.SPID)
}

func (s *CardState) selectByName(scope SPScope, ch int, c apdu.Command) string {
	if len(c.Data) == 0 {
		return "SELECT without an AID selects the issuer security domain, which is not allowed: SELECT " +
			scope.SPID + "'s security domain or one of its service instances by its full AID"
	}
	if c.P2&p2OccurrenceMask != p2FirstOccurrence {
		return "SELECT of a next or previous occurrence is not allowed: SELECT by the full AID (P2 00)"
	}
	aid := fmt.Sprintf("%X", c.Data)
	s.setLevel(ch, 0, false)
	switch {
	case scope.isSD(aid):
		s.Channels[ch] = SelectedOwnSD
		s.setSD(ch, aid)
	case scope.isInstance(aid):
		s.Channels[ch] = SelectedOwnInstance
		s.setSD(ch, "")
	default:
		return fmt.Sprintf("SELECT of an AID that is not %s's security domain or one of its service instances (%s)",
			scope.SPID, aid)
	}
	return ""
}

// manageChannel opens or closes a supplementary channel. MANAGE CHANNEL
// itself is allowed; the router only tracks what it does.
func (s *CardState) manageChannel(origin int, c apdu.Command) string {
	switch c.P1 {
	case p1ManageOpen:
		target := int(c.P2)
		if target == 0 {
			// The card assigns the lowest closed channel.
			target = -1
			for ch := 1; ch <= MaxLogicalChannel; ch++ {
				if _, open := s.Channels[ch]; !open {
					target = ch
					break
				}
			}
			if target < 0 {
				return "MANAGE CHANNEL open: every logical channel is already open"
			}
		}
		if target > MaxLogicalChannel {
			return fmt.Sprintf("MANAGE CHANNEL open: logical channel %d does not exist (1-%d)", target, MaxLogicalChannel)
		}
		if _, open := s.Channels[origin]; !open {
			return fmt.Sprintf("MANAGE CHANNEL on logical channel %d, which is not open", origin)
		}
		// ISO 7816-4 / GP: opened from the basic channel, the new channel
		// gets the default selected application (the ISD); opened from a
		// supplementary channel, it gets that channel's selection.
		sel, sd := SelectedISD, ""
		if origin != 0 {
			sel, sd = s.Channels[origin], s.SDs[origin]
		}
		s.Channels[target] = sel
		s.setSD(target, sd)
		s.setLevel(target, 0, false)
	case p1ManageClose:
		target := int(c.P2)
		if target == 0 {
			target = origin
		}
		if target != 0 {
			delete(s.Channels, target)
			s.setSD(target, "")
			s.setLevel(target, 0, false)
		}
	default:
		return fmt.Sprintf("MANAGE CHANNEL with P1 %02X is neither open (00) nor close (80)", c.P1)
	}
	return ""
}

// WithOwnSD returns a copy of s with the SP's SD aid selected on channel ch:
// the router selected it to open its secure channel for a securing central
// script.
func (s CardState) WithOwnSD(ch int, aid string) CardState {
	c := s.clone()
	c.Channels[ch] = SelectedOwnSD
	c.setSD(ch, strings.ToUpper(aid))
	return c
}
