package card

import (
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/command"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// LCAppPersonalized is the application-specific state (GPC Table 11-4,
// b4 set) the generic application enters once it has received the last
// STORE DATA block of its personalization.
const LCAppPersonalized byte = 0x0F

// storeData is STORE DATA (GPC 11.11) received by an SD: to the application
// of the personalization session, or to the SD itself.
func (r *request) storeData() ([]byte, uint16) {
	ch := r.ch
	if ch.PersoTarget != nil {
		t := r.st.find(ch.PersoTarget)
		if t == nil {
			ch.PersoTarget = nil
			ch.StoreNext = 0
			return nil, apdu.SWReferencedDataNotFound
		}
		if !t.isSD() {
			return r.storeToApp(t)
		}
		return r.storeToSD(t)
	}
	return r.storeToSD(r.sd)
}

// checkBlock enforces the sequential block numbers of GPC 11.11.2.2.
func (r *request) checkBlock() bool {
	if int(r.cmd.P2) != r.ch.StoreNext {
		r.ch.StoreNext = 0
		return false
	}
	return true
}

// endBlock advances the block counter, or ends the personalization session
// on the last block (GPC 11.11.1).
func (r *request) endBlock() {
	if r.cmd.P1&0x80 != 0 {
		r.ch.StoreNext = 0
		r.ch.PersoTarget = nil
		return
	}
	r.ch.StoreNext++
}

// storeToApp keeps the block as the application's personalization data.
func (r *request) storeToApp(app *entry) ([]byte, uint16) {
	if !r.checkBlock() {
		return nil, apdu.SWIncorrectP1P2
	}
	if app.locked() {
		r.ch.StoreNext = 0
		return nil, apdu.SWConditionsNotSatisfied
	}
	if len(app.Perso) >= 1024 {
		r.ch.StoreNext = 0
		return nil, apdu.SWNotEnoughMemory
	}
	app.Perso = append(app.Perso, persoRecord{P1: r.cmd.P1, Data: clone(r.cmd.Data)})
	if r.cmd.P1&0x80 != 0 && app.LifeCycle == LCSelectable {
		app.LifeCycle = LCAppPersonalized
	}
	r.endBlock()
	return nil, apdu.SWOK
}

// generated lists data objects an SD computes itself and refuses to store
// (GPC 11.11.2.3).
var generated = map[string]bool{"D3": true, "2F00": true, "FF21": true, "C2": true, "C1": true}

// storeToSD processes STORE DATA addressed to an SD: BER-TLV data objects
// (P1 b5b4 = 10) or DGIs (01; DGI 0070 wraps data objects, 00B9 + 8113 load
// keys, GPC 11.11.4). With P1 b1 (case 4) a BER-TLV object whose value is a
// tag list 5C returns the listed objects in the same template (the retrieval
// pattern of GSMA SGP.22 GET EID, which the published sessions use).
func (r *request) storeToSD(sd *entry) ([]byte, uint16) {
	cmd := r.cmd
	if !r.checkBlock() {
		return nil, apdu.SWIncorrectP1P2
	}
	fail := func(s uint16) ([]byte, uint16) {
		r.ch.StoreNext = 0
		return nil, s
	}
	var resp []byte
	switch cmd.P1 & 0x18 {
	case 0x10: // BER-TLV
		objs, err := tlv.ParseWith(cmd.Data, gpTLV)
		if err != nil {
			return fail(apdu.SWIncorrectData)
		}
		for _, o := range objs {
			if cmd.P1&0x01 != 0 {
				if inner, err := tlv.ParseWith(o.Value, gpTLV); err == nil && len(inner) == 1 && inner[0].Tag == 0x5C {
					resp = append(resp, r.retrieve(sd, o.Tag, inner[0].Value)...)
					continue
				}
			}
			if s := storeObject(sd, o); s != apdu.SWOK {
				return fail(s)
			}
		}
	case 0x08: // DGI
		dgis, ok := parseDGIs(cmd.Data)
		if !ok {
			return fail(apdu.SWIncorrectData)
		}
		if s := r.storeDGIs(sd, dgis); s != apdu.SWOK {
			return fail(s)
		}
	}
	if cmd.P1&0x18 == 0 || cmd.P1&0x18 == 0x18 {
		// Application-dependent format: the SD keeps the raw block.
		if len(sd.Perso) >= 1024 {
			return fail(apdu.SWNotEnoughMemory)
		}
		sd.Perso = append(sd.Perso, persoRecord{P1: cmd.P1, Data: clone(cmd.Data)})
	}
	if resp != nil && cmd.P1&0x01 == 0 {
		return fail(apdu.SWIncorrectP1P2)
	}
	r.endBlock()
	return resp, apdu.SWOK
}

func storeObject(sd *entry, o tlv.TLV) uint16 {
	t := dataKey(o.Tag)
	if generated[t] {
		return apdu.SWIncorrectData
	}
	if sd.Data == nil {
		sd.Data = map[string][]byte{}
	}
	if _, ok := sd.Data[t]; !ok && len(sd.Data) >= 256 {
		return apdu.SWNotEnoughMemory
	}
	sd.Data[t] = clone(o.Value)
	return apdu.SWOK
}

// retrieve answers a tag-list request: template { requested objects }.
func (r *request) retrieve(sd *entry, template uint32, list []byte) []byte {
	tags, ok := tagList(list)
	if !ok {
		return nil
	}
	var body []byte
	for _, t := range tags {
		if v, ok := sd.Data[dataKey(t)]; ok {
			body = append(body, tlv.Encode(t, v)...)
		}
	}
	return tlv.Encode(template, body)
}

type dgi struct {
	id    uint16
	value []byte
}

// parseDGIs parses DGI structures: 2-byte identifier, length on 1 byte or
// FF xx xx (GP Scripting Language / EMV CPS). DGIs are not BER-TLV and no
// shared package reads them, so the parser stays here.
func parseDGIs(b []byte) ([]dgi, bool) {
	var out []dgi
	for len(b) > 0 {
		if len(b) < 3 {
			return nil, false
		}
		id := uint16(b[0])<<8 | uint16(b[1])
		n, off := int(b[2]), 3
		if b[2] == 0xFF {
			if len(b) < 5 {
				return nil, false
			}
			n, off = int(b[3])<<8|int(b[4]), 5
		}
		if len(b) < off+n {
			return nil, false
		}
		out = append(out, dgi{id: id, value: b[off : off+n]})
		b = b[off+n:]
	}
	return out, true
}

// storeDGIs handles DGI 0070 (data objects) and 00B9 + 8113 (symmetric key
// loading, GPC 11.11.4.1: key values encrypted with the DEK of the secure
// channel, KCV checked with 6982 on mismatch).
func (r *request) storeDGIs(sd *entry, dgis []dgi) uint16 {
	type pending struct {
		typ, id, kvn byte
		length       int
		kcv          []byte
	}
	var crts []pending
	var keys []pending
	var values [][]byte
	for _, d := range dgis {
		switch d.id {
		case 0x0070:
			objs, err := tlv.ParseWith(d.value, gpTLV)
			if err != nil {
				return apdu.SWIncorrectData
			}
			for _, o := range objs {
				if s := storeObject(sd, o); s != apdu.SWOK {
					return s
				}
			}
		case 0x00B9:
			objs, err := tlv.ParseWith(d.value, gpTLV)
			if err != nil {
				return apdu.SWIncorrectData
			}
			crts = crts[:0]
			for _, o := range objs {
				if o.Tag != 0xB9 {
					return apdu.SWIncorrectData
				}
				inner, err := tlv.ParseWith(o.Value, gpTLV)
				if err != nil {
					return apdu.SWIncorrectData
				}
				var p pending
				for _, x := range inner {
					if len(x.Value) == 0 {
						continue
					}
					switch x.Tag {
					case 0x80:
						p.typ = x.Value[0]
					case 0x81:
						for _, v := range x.Value {
							p.length = p.length<<8 | int(v)
						}
					case 0x82:
						p.id = x.Value[0]
					case 0x83:
						p.kvn = x.Value[0]
					case 0x84:
						p.kcv = clone(x.Value)
					}
				}
				crts = append(crts, p)
			}
		case 0x8113:
			if len(crts) == 0 {
				return apdu.SWIncorrectData
			}
			keys = append(keys, crts[0])
			values = append(values, d.value)
			crts = crts[1:]
		}
	}
	if len(keys) == 0 {
		return apdu.SWOK
	}
	if sd != r.sd && !canReceiveForwardedKeys(sd) {
		return apdu.SWConditionsNotSatisfied
	}
	if r.s == nil {
		return apdu.SWSecurityNotSatisfied
	}
	newKeys := make([]Key, len(keys))
	for i, k := range keys {
		if k.typ != KeyTypeAES && k.typ != KeyTypeDES {
			return apdu.SWIncorrectData
		}
		dec, err := r.s.decryptKey(values[i])
		if err != nil || k.length <= 0 || k.length > len(dec) {
			return apdu.SWIncorrectData
		}
		v := clone(dec[:k.length])
		if len(k.kcv) > 0 {
			kcv, err := command.KCV(k.typ, v)
			if err != nil || !gpcrypto.Equal(kcv, k.kcv[:min(len(k.kcv), 3)]) {
				return apdu.SWSecurityNotSatisfied
			}
		}
		newKeys[i] = Key{ID: k.id, Type: k.typ, Value: v}
	}
	for i, k := range keys {
		ks := sd.keySet(k.kvn)
		if ks == nil {
			sd.KeySets = append(sd.KeySets, KeySet{KVN: k.kvn})
			ks = &sd.KeySets[len(sd.KeySets)-1]
		}
		if old := ks.key(k.id); old != nil {
			*old = newKeys[i]
		} else {
			ks.Keys = append(ks.Keys, newKeys[i])
		}
		ks.Seq = 0
	}
	r.maybePersonalize(sd)
	return apdu.SWOK
}

// maybePersonalize moves a supplementary SD that received a complete secure
// channel key set during a personalization session from SELECTABLE to
// PERSONALIZED. GPC 5.3.2.3 leaves the condition SD dependent; this is ours,
// so that pre-personalization (DESIGN.md 1, Fig. 4) can extradite into the
// new SD in the same session.
func (r *request) maybePersonalize(sd *entry) {
	if sd.Kind == KindSD && sd.LifeCycle == LCSelectable && sd.defaultKeySet() != nil && aidEq(r.ch.PersoTarget, sd.AID) {
		sd.LifeCycle = LCPersonalized
	}
}
