package card

import (
	"bytes"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/command"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// statusCursor continues a GET STATUS answered with 6310 (GPC 11.4.2.2).
type statusCursor struct {
	P1     byte     `json:"p1"`
	P2     byte     `json:"p2"`
	Filter []byte   `json:"filter,omitempty"`
	LC     *byte    `json:"lc,omitempty"`
	Tags   []uint32 `json:"tags,omitempty"`
	Next   int      `json:"next"`
}

// statusLimit keeps a GET STATUS response, with R-ENC padding and R-MAC,
// inside a short response.
const statusLimit = 232

// getStatus is GET STATUS (GPC 11.4; response layout Tables 11-36, 11-37).
func (r *request) getStatus() ([]byte, uint16) {
	cmd := r.cmd
	if cmd.P2&^0x03 != 0 {
		return nil, apdu.SWIncorrectP1P2
	}
	switch cmd.P1 {
	case 0x80, 0x40, 0x20, 0x10:
	default:
		return nil, apdu.SWIncorrectP1P2
	}
	var cur statusCursor
	if cmd.P2&0x01 != 0 {
		if r.ch.Status == nil || r.ch.Status.P1 != cmd.P1 || r.ch.Status.P2&0x02 != cmd.P2&0x02 {
			r.ch.Status = nil
			return nil, apdu.SWConditionsNotSatisfied
		}
		cur = *r.ch.Status
	} else {
		cur = statusCursor{P1: cmd.P1, P2: cmd.P2}
		objs, err := tlv.ParseWith(cmd.Data, gpTLV)
		if err != nil {
			return nil, apdu.SWIncorrectData
		}
		has4F := false
		for _, o := range objs {
			switch o.Tag {
			case 0x4F:
				has4F = true
				cur.Filter = clone(o.Value)
			case 0x9F70:
				if len(o.Value) < 1 {
					return nil, apdu.SWIncorrectData
				}
				lc := o.Value[len(o.Value)-1]
				cur.LC = &lc
			case 0x5C:
				tags, ok := tagList(o.Value)
				if !ok {
					return nil, apdu.SWIncorrectData
				}
				cur.Tags = tags
			}
		}
		if !has4F {
			return nil, apdu.SWIncorrectData
		}
	}
	r.ch.Status = nil
	req := r.sd
	global := req.Kind == KindISD || req.Privileges.Has(PrivGlobalRegistry)
	if cmd.P1 == 0x80 && !global {
		return nil, apdu.SWIncorrectP1P2
	}
	var matches []*entry
	for _, e := range r.st.Entries {
		switch cmd.P1 {
		case 0x80:
			if e.Kind != KindISD {
				continue
			}
		case 0x40:
			if e.Kind != KindApp && e.Kind != KindSD {
				continue
			}
		case 0x20, 0x10:
			if e.Kind != KindELF {
				continue
			}
		}
		if !global && !r.st.inHierarchy(e, req) {
			continue
		}
		if !bytes.HasPrefix(e.AID, cur.Filter) {
			continue
		}
		if cur.LC != nil && r.lifeCycleOf(e) != *cur.LC {
			continue
		}
		matches = append(matches, e)
	}
	if len(matches) == 0 {
		return nil, apdu.SWReferencedDataNotFound
	}
	if cur.Next >= len(matches) {
		return nil, apdu.SWReferencedDataNotFound
	}
	var out []byte
	i := cur.Next
	for ; i < len(matches); i++ {
		rec := r.statusRecord(matches[i], cmd.P1, cmd.P2&0x02 != 0, cur.Tags)
		if len(out)+len(rec) > statusLimit && len(out) > 0 {
			break
		}
		out = append(out, rec...)
	}
	if i < len(matches) {
		cur.Next = i
		r.ch.Status = &cur
		return out, apdu.SWMoreData
	}
	return out, apdu.SWOK
}

func (r *request) lifeCycleOf(e *entry) byte {
	if e.Kind == KindISD {
		return r.st.LifeCycle
	}
	return e.LifeCycle
}

// statusRecord encodes one entry in the TLV format (P2 b2 = 1) as the
// E3 { 4F, 9F70, C5, CF, C4, CE, 84, CC } of command.StatusEntry, or with a
// tag list (5C) just the listed objects, in the listed order; or in the
// deprecated fixed format.
func (r *request) statusRecord(e *entry, p1 byte, tlvFormat bool, tags []uint32) []byte {
	lc := r.lifeCycleOf(e)
	if !tlvFormat {
		out := append([]byte{byte(len(e.AID))}, e.AID...)
		out = append(out, lc)
		if e.Kind == KindELF {
			out = append(out, 0)
			if p1 == 0x10 {
				out = append(out, byte(len(e.Modules)))
				for _, m := range e.Modules {
					out = append(out, byte(len(m)))
					out = append(out, m...)
				}
			}
			return out
		}
		return append(out, e.Privileges[0])
	}
	se := command.StatusEntry{AID: e.AID, LifeCycle: lc, AssociatedSD: e.SD}
	for _, b := range e.ImplicitSelection {
		se.ImplicitSelection = append(se.ImplicitSelection, []byte{b})
	}
	if e.Kind == KindELF {
		se.Version = e.Version
		if p1 == 0x10 {
			se.Modules = e.Modules
		}
	} else {
		se.Privileges, se.HasPrivileges = command.Privileges(e.Privileges), true
		se.ELF = e.ELF
	}
	full := se.Encode()
	if tags == nil {
		return full
	}
	var objs []tlv.TLV
	if t, _, err := tlv.ParseOne(full); err == nil {
		objs, _ = t.Children()
	}
	var body []byte
	for _, tag := range tags {
		for _, o := range tlv.FindAll(objs, tag) {
			body = append(body, o.Raw...)
		}
	}
	return tlv.Encode(0xE3, body)
}

// gpTLV is how the card reads BER-TLV command data: a lone 80 is a length
// of 128 (gp-card.md 2.3) and 00/FF padding between objects is skipped
// (ISO/IEC 7816-4 5.2).
var gpTLV = tlv.Options{Accept80As128: true, SkipPadding: true}

// tagList splits the value of a tag list (5C): BER tags without lengths,
// up to 4 bytes each. pkg/gp/tlv reads tags only inside data objects, so
// this small reader stays here.
func tagList(b []byte) ([]uint32, bool) {
	var out []uint32
	for len(b) > 0 {
		n := 1
		if b[0]&0x1F == 0x1F {
			// Subsequent bytes while b8 is set.
			for {
				if n >= len(b) || n >= 4 {
					return nil, false
				}
				n++
				if b[n-1]&0x80 == 0 {
					break
				}
			}
		}
		var tag uint32
		for _, c := range b[:n] {
			tag = tag<<8 | uint32(c)
		}
		out = append(out, tag)
		b = b[n:]
	}
	return out, true
}
