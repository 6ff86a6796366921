package card

import (
	"bytes"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
)

// statusCursor continues a GET STATUS answered with 6310 (GPC 11.4.2.2).
type statusCursor struct {
	P1     byte     `json:"p1"`
	P2     byte     `json:"p2"`
	Filter []byte   `json:"filter,omitempty"`
	LC     *byte    `json:"lc,omitempty"`
	Tags   [][]byte `json:"tags,omitempty"`
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
		objs, ok := parseTLVs(cmd.Data)
		if !ok {
			return nil, apdu.SWIncorrectData
		}
		has4F := false
		for _, o := range objs {
			switch {
			case bytes.Equal(o.tag, []byte{0x4F}):
				has4F = true
				cur.Filter = clone(o.value)
			case bytes.Equal(o.tag, []byte{0x9F, 0x70}):
				if len(o.value) < 1 {
					return nil, apdu.SWIncorrectData
				}
				lc := o.value[len(o.value)-1]
				cur.LC = &lc
			case bytes.Equal(o.tag, []byte{0x5C}):
				tags, ok := splitTags(o.value)
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

// statusRecord encodes one entry: E3 { 4F, 9F70, C5, C4, CC, CE, 84 } in
// the TLV format (P2 b2 = 1), or the deprecated fixed format.
func (r *request) statusRecord(e *entry, p1 byte, tlvFormat bool, tags [][]byte) []byte {
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
	field := func(tag []byte) []byte {
		switch {
		case bytes.Equal(tag, []byte{0x4F}):
			return tlv(0x4F, e.AID)
		case bytes.Equal(tag, []byte{0x9F, 0x70}):
			return tlvTag([]byte{0x9F, 0x70}, []byte{lc})
		case bytes.Equal(tag, []byte{0xC5}):
			if e.Kind == KindELF {
				return nil
			}
			return tlv(0xC5, e.Privileges[:])
		case bytes.Equal(tag, []byte{0xC4}):
			if e.Kind == KindELF || e.ELF == nil {
				return nil
			}
			return tlv(0xC4, e.ELF)
		case bytes.Equal(tag, []byte{0xCC}):
			if e.SD == nil {
				return nil
			}
			return tlv(0xCC, e.SD)
		case bytes.Equal(tag, []byte{0xCE}):
			if e.Kind != KindELF || e.Version == nil {
				return nil
			}
			return tlv(0xCE, e.Version)
		case bytes.Equal(tag, []byte{0x84}):
			if e.Kind != KindELF || p1 != 0x10 {
				return nil
			}
			var out []byte
			for _, m := range e.Modules {
				out = append(out, tlv(0x84, m)...)
			}
			return out
		case bytes.Equal(tag, []byte{0xCF}):
			if len(e.ImplicitSelection) == 0 {
				return nil
			}
			var out []byte
			for _, b := range e.ImplicitSelection {
				out = append(out, tlv(0xCF, []byte{b})...)
			}
			return out
		}
		return nil
	}
	if tags == nil {
		tags = [][]byte{{0x4F}, {0x9F, 0x70}, {0xC5}, {0xCF}, {0xC4}, {0xCE}, {0x84}, {0xCC}}
	}
	var body []byte
	for _, t := range tags {
		body = append(body, field(t)...)
	}
	return tlv(0xE3, body)
}

// tlvObj is a parsed BER-TLV object.
type tlvObj struct {
	tag, value []byte
	// off is the offset of the tag in the parsed buffer.
	off int
}

// parseTLVs parses a sequence of BER-TLV objects (tags up to 3 bytes,
// lengths up to 3 bytes; 80 is accepted as a length of 128, gp-card.md
// 2.3). It never reads outside b.
func parseTLVs(b []byte) ([]tlvObj, bool) {
	var out []tlvObj
	base := len(b)
	for len(b) > 0 {
		if b[0] == 0x00 || b[0] == 0xFF {
			// Padding between objects (ISO 7816-4 5.2.2.1).
			b = b[1:]
			continue
		}
		tl, ok := tagLen(b)
		if !ok {
			return nil, false
		}
		tag := b[:tl]
		n, ll, ok := berLength(b[tl:])
		if !ok || len(b) < tl+ll+n {
			return nil, false
		}
		out = append(out, tlvObj{tag: tag, value: b[tl+ll : tl+ll+n], off: base - len(b)})
		b = b[tl+ll+n:]
	}
	return out, true
}

func tagLen(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	if b[0]&0x1F != 0x1F {
		return 1, true
	}
	for i := 1; i < len(b) && i < 3; i++ {
		if b[i]&0x80 == 0 {
			return i + 1, true
		}
	}
	return 0, false
}

// berLength decodes a BER length: value, number of length bytes.
func berLength(b []byte) (int, int, bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch {
	case b[0] < 0x80:
		return int(b[0]), 1, true
	case b[0] == 0x80:
		return 128, 1, true
	case b[0] == 0x81 && len(b) >= 2:
		return int(b[1]), 2, true
	case b[0] == 0x82 && len(b) >= 3:
		return int(b[1])<<8 | int(b[2]), 3, true
	}
	return 0, 0, false
}

func splitTags(b []byte) ([][]byte, bool) {
	var out [][]byte
	for len(b) > 0 {
		n, ok := tagLen(b)
		if !ok {
			return nil, false
		}
		out = append(out, clone(b[:n]))
		b = b[n:]
	}
	return out, true
}
