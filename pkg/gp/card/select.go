package card

import (
	"bytes"
	"encoding/hex"
	"strings"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/command"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// selectCmd is SELECT by name (GPC 11.9).
func (r *request) selectCmd() []byte {
	cmd := r.cmd
	if cmd.P1 != 0x04 {
		return sw(apdu.SWIncorrectP1P2)
	}
	if cmd.P2 != 0x00 && cmd.P2 != 0x02 {
		return sw(apdu.SWIncorrectP1P2)
	}
	if len(cmd.Data) > 16 {
		return sw(apdu.SWWrongLength)
	}
	st := r.st
	var target *entry
	if len(cmd.Data) == 0 {
		if cmd.P2 != 0 {
			return sw(apdu.SWIncorrectP1P2)
		}
		// GPC 11.9.2.3: no AID selects the ISD (or the Card Reset holder
		// on channel 0).
		target = st.find(st.defaultApp())
		if r.chNo != 0 {
			target = st.isd()
		}
	} else {
		// Partial AID matching in registry order; P2=02 continues after
		// the currently selected application (ISO 7816-4 7.1.1).
		start := 0
		if cmd.P2 == 0x02 {
			for i, e := range st.Entries {
				if bytes.Equal(e.AID, r.ch.Selected) {
					start = i + 1
				}
			}
		}
		for _, e := range st.Entries[start:] {
			if e.Kind != KindELF && bytes.HasPrefix(e.AID, cmd.Data) {
				target = e
				break
			}
		}
	}
	if target == nil {
		return sw(apdu.SWApplicationNotFound)
	}
	if st.LifeCycle == CardLocked {
		// GPC Table 11-1 note 1: only the Final Application can be selected.
		if !target.Privileges.Has(PrivFinalApplication) || target.locked() {
			return sw(apdu.SWFunctionNotSupported)
		}
	} else if !target.selectable() {
		return sw(apdu.SWApplicationNotFound)
	}
	// A new selection ends the secure channel and any personalization or
	// load session on this channel (GPC 10.2.3, 11.11.1).
	r.ch.resetSessionState()
	r.ch.Selected = clone(target.AID)
	fci := r.fci(target)
	status := apdu.SWOK
	if st.LifeCycle == CardLocked {
		status = apdu.SWCardLocked
	}
	return r.finish(fci, status)
}

// fci builds the File Control Information of GPC 11.9.3.1:
// 6F { 84 AID, A5 { [73 SD management data], 9F6E (not sent), 9F65 max
// command data length } }.
func (r *request) fci(e *entry) []byte {
	var a5 [][]byte
	if e.isSD() {
		a5 = append(a5, tlv.Encode(0x73, r.recognitionData(e)))
	}
	a5 = append(a5, tlv.Encode(0x9F65, []byte{0xFF}))
	return tlv.EncodeConstructed(0x6F, tlv.Encode(0x84, e.AID), tlv.EncodeConstructed(0xA5, a5...))
}

var gpOID = []byte{0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B}

// recognitionData is the content of tag 73 (GPC Table H-1 / H-3): GP OID,
// card management type and version (GP 2.3.1), card identification scheme,
// and the SD's secure channel protocol with its i parameter.
func (r *request) recognitionData(e *entry) []byte {
	oid := func(suffix ...byte) []byte { return tlv.Encode(0x06, append(clone(gpOID), suffix...)) }
	out := oid(0x01)
	out = append(out, tlv.Encode(0x60, oid(0x02, 0x02, 0x03, 0x01))...)
	out = append(out, tlv.Encode(0x63, oid(0x03))...)
	scp, i := byte(3), e.SCP03I
	for _, ks := range e.KeySets {
		if ks.scp() == 2 {
			scp, i = 2, e.SCP02I
			break
		}
		if ks.scp() == 3 {
			break
		}
	}
	out = append(out, tlv.Encode(0x64, oid(0x04, scp, i))...)
	return out
}

// manageChannel is MANAGE CHANNEL (GPC 11.7, ISO 7816-4 7.1.2).
func (r *request) manageChannel() []byte {
	cmd := r.cmd
	if len(cmd.Data) != 0 {
		return sw(apdu.SWWrongLength)
	}
	st := r.st
	switch cmd.P1 {
	case 0x00: // open
		n := int(cmd.P2)
		if n == 0 {
			for i := 1; i < len(st.Channels); i++ {
				if st.Channels[i] == nil {
					n = i
					break
				}
			}
			if n == 0 {
				return sw(apdu.SWFunctionNotSupported)
			}
		} else if n >= len(st.Channels) {
			return sw(apdu.SWIncorrectP1P2)
		} else if st.Channels[n] != nil {
			return sw(apdu.SWIncorrectP1P2)
		}
		// ISO 7816-4: opened from channel 0 the new channel selects the
		// default application; from another channel, that channel's
		// application.
		sel := st.defaultApp()
		if r.chNo != 0 {
			sel = r.ch.Selected
		}
		if st.LifeCycle == CardLocked {
			sel = nil
		}
		st.Channels[n] = &channel{Selected: clone(sel)}
		if cmd.P2 == 0 {
			return r.finish([]byte{byte(n)}, apdu.SWOK)
		}
		return sw(apdu.SWOK)
	case 0x80: // close
		n := int(cmd.P2)
		if n == 0 {
			return sw(apdu.SWIncorrectP1P2)
		}
		if n >= len(st.Channels) {
			return sw(apdu.SWIncorrectP1P2)
		}
		if st.Channels[n] == nil {
			return sw(apdu.SWChannelAlreadyClosed)
		}
		st.Channels[n] = nil
		return sw(apdu.SWOK)
	}
	return sw(apdu.SWIncorrectP1P2)
}

// getData is GET DATA (GPC 11.3): CLA 80 returns the full TLV, CLA 00 the
// value only (gp-card.md 2.7).
func (r *request) getData() ([]byte, uint16) {
	cmd := r.cmd
	if !r.sel.isSD() {
		return nil, apdu.SWReferencedDataNotFound
	}
	e := r.sel
	tag := uint16(cmd.P1)<<8 | uint16(cmd.P2)
	full := apdu.IsProprietary(cmd.CLA)
	var value []byte
	switch tag {
	case 0x0042:
		value = r.sdData(e, "42")
	case 0x0045:
		value = r.sdData(e, "45")
	case 0x004F:
		value = clone(e.AID)
	case 0x0066:
		value = tlv.Encode(0x73, r.recognitionData(e))
	case 0x0067:
		if e.Kind != KindISD {
			return nil, apdu.SWReferencedDataNotFound
		}
		value = cardCapability()
	case 0x00C1:
		ks := e.defaultKeySet()
		if ks == nil {
			return nil, apdu.SWReferencedDataNotFound
		}
		if ks.scp() == 2 {
			value = []byte{byte(ks.Seq >> 8), byte(ks.Seq)}
		} else {
			value = []byte{byte(ks.Seq >> 16), byte(ks.Seq >> 8), byte(ks.Seq)}
		}
	case 0x00C2:
		if !e.Privileges.Has(PrivReceiptGeneration) {
			return nil, apdu.SWReferencedDataNotFound
		}
		value = []byte{byte(e.ConfirmationCounter >> 8), byte(e.ConfirmationCounter)}
	case 0x00D3:
		lvl := byte(0)
		if r.ch.Session.authenticated() {
			lvl = r.ch.Session.level()
		}
		value = []byte{lvl}
	case 0x00E0:
		value = keyInfo(e)
	case 0x9F7F:
		value = clone(r.st.CPLC)
	case 0x2F00:
		// List of applications (GPC 11.3.3.1): 61 { 4F AID } per
		// application of the SD's sub-hierarchy, or all with Global Registry.
		var out []byte
		for _, x := range r.st.Entries {
			if x.Kind == KindELF || x.Kind == KindISD {
				continue
			}
			if e.Kind == KindISD || e.Privileges.Has(PrivGlobalRegistry) || r.st.inHierarchy(x, e) {
				out = append(out, tlv.Encode(0x61, tlv.Encode(0x4F, x.AID))...)
			}
		}
		return out, apdu.SWOK
	case 0xFF21:
		// Extended card resources (ETSI TS 102 226 8.2.1.7.2).
		n := 0
		for _, x := range r.st.Entries {
			if x.Kind == KindApp || x.Kind == KindSD {
				n++
			}
		}
		value = append(tlv.Encode(0x81, []byte{byte(n >> 8), byte(n)}), tlv.Encode(0x82, []byte{0, 1, 0, 0})...)
		value = append(value, tlv.Encode(0x83, []byte{0, 0, 0x10, 0})...)
	default:
		v, ok := e.Data[dataKey(uint32(tag))]
		if !ok {
			return nil, apdu.SWReferencedDataNotFound
		}
		value = clone(v)
	}
	if value == nil {
		return nil, apdu.SWReferencedDataNotFound
	}
	if !full {
		return value, apdu.SWOK
	}
	return tlv.Encode(uint32(tag), value), apdu.SWOK
}

// sdData returns an SD's 42/45 data object: what STORE DATA stored, else
// the card's IIN/CIN (GPC 11.11.2.3: mandatory for the ISD).
func (r *request) sdData(e *entry, tag string) []byte {
	if v, ok := e.Data[tag]; ok {
		return clone(v)
	}
	if tag == "42" {
		return clone(r.st.IIN)
	}
	return clone(r.st.CIN)
}

// dataKey is the key of a data object in entry.Data: its tag in hex.
func dataKey(tag uint32) string { return strings.ToUpper(hex.EncodeToString(tlv.TagBytes(tag))) }

// cardCapability is tag 67 (GPC H.4, Tables H-5 to H-10).
func cardCapability() []byte {
	return bytes.Join([][]byte{
		tlv.EncodeConstructed(0xA0, tlv.Encode(0x80, []byte{0x03}), tlv.Encode(0x81, []byte{0x00, 0x10, 0x60, 0x70}),
			tlv.Encode(0x82, []byte{0x07})),
		tlv.EncodeConstructed(0xA0, tlv.Encode(0x80, []byte{0x02}), tlv.Encode(0x81, []byte{0x15, 0x55})),
		tlv.Encode(0x81, []byte{0xFE, 0xFF, 0x80}), // SSD privileges
		tlv.Encode(0x82, []byte{0x06, 0x03, 0x00}), // application privileges
		tlv.Encode(0x83, []byte{0x01, 0x02, 0x03, 0x04}),
		tlv.Encode(0x85, []byte{0x38}), // tokens: AES CMAC 128/192/256
		tlv.Encode(0x86, []byte{0x38}), // receipts
		tlv.Encode(0x87, []byte{0x38}), // DAPs
	}, nil)
}

// keyInfo is the value of the Key Information Template E0 (GPC 11.3.3.1):
// C0 { id, KVN, type, length } per key; nil when the SD has no keys.
func keyInfo(e *entry) []byte {
	var keys []command.KeyInfo
	for _, ks := range e.KeySets {
		for _, k := range ks.Keys {
			keys = append(keys, command.KeyInfo{ID: k.ID, Version: ks.KVN, Type: k.Type, Length: len(k.Value)})
		}
	}
	if len(keys) == 0 {
		return nil
	}
	t, _, err := tlv.ParseOne(command.KeyInformationTemplate(keys))
	if err != nil {
		return nil
	}
	return t.Value
}

// defaultKeySet is the first key set that can open a secure channel.
func (e *entry) defaultKeySet() *KeySet {
	for i := range e.KeySets {
		if e.KeySets[i].scp() != 0 {
			return &e.KeySets[i]
		}
	}
	return nil
}
