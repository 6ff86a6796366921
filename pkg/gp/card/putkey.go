package card

import (
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/command"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
)

// putKey is PUT KEY (GPC 11.8, Amd D 7.2): add or replace one or several
// keys atomically. During a personalization session on a supplementary SD
// (INSTALL [for personalization] naming the SD), the SD processing the
// command forwards the keys to that SD: this is how a new SP SD gets its
// first (temporary) keys from the central SD (DESIGN.md 6).
func (r *request) putKey() ([]byte, uint16) {
	cmd := r.cmd
	target := r.sd
	if r.ch.PersoTarget != nil {
		if t := r.st.find(r.ch.PersoTarget); t != nil && t.isSD() {
			if !canReceiveForwardedKeys(t) {
				return nil, apdu.SWConditionsNotSatisfied
			}
			target = t
		}
	}
	if r.s == nil {
		return nil, apdu.SWSecurityNotSatisfied
	}
	oldKVN := cmd.P1 & 0x7F
	multiple := cmd.P2&0x80 != 0
	firstID := cmd.P2 & 0x7F
	if len(cmd.Data) < 1 {
		return nil, apdu.SWWrongLength
	}
	newKVN, comps, err := command.ParsePutKeyData(cmd.Data)
	if err != nil || newKVN == 0 || newKVN > 0x7F {
		return nil, apdu.SWIncorrectData
	}
	type block struct {
		typ   byte
		value []byte
		kcv   []byte
	}
	var blocks []block
	for _, kc := range comps {
		var enc []byte
		var klen int
		switch kc.Type {
		case KeyTypeAES:
			// Amd D 7.2: key data = length of key (1) || encrypted key.
			enc, klen = kc.Encrypted, kc.KeyLength
			if (klen != 16 && klen != 24 && klen != 32) || len(enc)%16 != 0 {
				return nil, apdu.SWIncorrectData
			}
		case KeyTypeDES:
			enc, klen = kc.Encrypted, 16
			if len(enc) != 16 {
				return nil, apdu.SWIncorrectData
			}
		default:
			// Includes FF, the extended key format (GPC 11.8.2.3.2): not supported.
			return nil, apdu.SWIncorrectData
		}
		dec, err := r.s.decryptKey(enc)
		if err != nil {
			return nil, apdu.SWIncorrectData
		}
		blocks = append(blocks, block{typ: kc.Type, value: clone(dec[:klen]), kcv: kc.KCV})
	}
	if len(blocks) == 0 || (!multiple && len(blocks) != 1) || int(firstID)+len(blocks)-1 > 0x7F {
		return nil, apdu.SWIncorrectData
	}
	kcvs := make([][]byte, 0, len(blocks))
	for _, b := range blocks {
		kcv, err := command.KCV(b.typ, b.value)
		if err != nil {
			return nil, apdu.SWIncorrectData
		}
		if len(b.kcv) > 0 && !gpcrypto.Equal(kcv, b.kcv) {
			return nil, apdu.SWSecurityNotSatisfied
		}
		kcvs = append(kcvs, kcv)
	}
	// All checks pass before any change: the command is atomic.
	if oldKVN == 0 {
		ks := target.keySet(newKVN)
		for i := range blocks {
			if ks != nil && ks.key(firstID+byte(i)) != nil {
				return nil, apdu.SWIncorrectData
			}
		}
		if ks == nil {
			target.KeySets = append(target.KeySets, KeySet{KVN: newKVN})
			ks = &target.KeySets[len(target.KeySets)-1]
		}
		for i, b := range blocks {
			ks.Keys = append(ks.Keys, Key{ID: firstID + byte(i), Type: b.typ, Value: b.value})
		}
		ks.Seq = 0
	} else {
		old := target.keySet(oldKVN)
		if old == nil {
			return nil, apdu.SWReferencedDataNotFound
		}
		if newKVN != oldKVN && target.keySet(newKVN) != nil {
			return nil, apdu.SWIncorrectData
		}
		replaced := 0
		for i, b := range blocks {
			if k := old.key(firstID + byte(i)); k != nil {
				// The algorithm and size of a replaced key cannot change.
				if k.Type != b.typ || len(k.Value) != len(b.value) {
					return nil, apdu.SWIncorrectData
				}
				replaced++
			}
		}
		whole := replaced == len(old.Keys)
		for i, b := range blocks {
			id := firstID + byte(i)
			if k := old.key(id); k != nil {
				k.Value = b.value
			} else {
				old.Keys = append(old.Keys, Key{ID: id, Type: b.typ, Value: b.value})
			}
		}
		old.KVN = newKVN
		if whole || newKVN != oldKVN {
			// Amd D 6.2.2.1: the counter restarts with a new key set.
			old.Seq = 0
		}
	}
	r.maybePersonalize(target)
	return command.PutKeyResponse(newKVN, kcvs), apdu.SWOK
}

// canReceiveForwardedKeys is our SD policy for keys loaded through the
// associated SD (PUT KEY forwarding, DGI 00B9/8113): only before the SD is
// PERSONALIZED. Afterwards its keys change only through its own secure
// channel, so that once an SP has rotated its keys the central TSM cannot
// replace them (DESIGN.md 6).
func canReceiveForwardedKeys(sd *entry) bool {
	return sd.Kind == KindSD && sd.LifeCycle&^LCLocked != LCPersonalized
}
