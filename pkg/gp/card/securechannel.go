package card

import (
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
)

// initializeUpdate is INITIALIZE UPDATE (GPC 11.12 / E.5.1, Amd D 7.1.1),
// processed by the selected SD or, for a selected application, its
// associated SD.
func (r *request) initializeUpdate() ([]byte, uint16) {
	cmd := r.cmd
	if cmd.P2 != 0 {
		return nil, apdu.SWIncorrectP1P2
	}
	if len(cmd.Data) != 8 {
		// S16 mode (16-byte host challenge) is not supported.
		return nil, apdu.SWWrongLength
	}
	// A new INITIALIZE UPDATE ends any current session on the channel
	// (Amd D 5.6) and the personalization session with it.
	r.ch.Session = nil
	r.ch.PersoTarget = nil
	r.ch.StoreNext = 0
	r.ch.Load = nil
	sd := r.sd
	if sd == nil || !sd.isSD() || sd.locked() {
		return nil, apdu.SWConditionsNotSatisfied
	}
	var ks *KeySet
	if cmd.P1 == 0 {
		ks = sd.defaultKeySet()
	} else {
		ks = sd.keySet(cmd.P1)
		if ks != nil && ks.scp() == 0 {
			ks = nil
		}
	}
	if ks == nil {
		return nil, apdu.SWReferencedDataNotFound
	}
	host := cmd.Data
	switch ks.scp() {
	case 3:
		i := sd.SCP03I
		var challenge []byte
		if i&0x10 != 0 {
			// Pseudo-random card challenge (Amd D 6.2.2.1): the counter is
			// incremented before use and never wraps.
			if ks.Seq >= 0xFFFFFF {
				return nil, apdu.SWConditionsNotSatisfied
			}
			ks.Seq++
			var err error
			if challenge, err = scp03Challenge(ks.key(1).Value, ks.Seq, sd.AID); err != nil {
				return nil, apdu.SWNoSpecificDiagnosis
			}
		} else {
			var ok bool
			if challenge, ok = r.c.readChallenge(8); !ok {
				return nil, apdu.SWNoSpecificDiagnosis
			}
		}
		s, cc, err := beginSCP03(ks, i, host, challenge)
		if err != nil {
			return nil, apdu.SWNoSpecificDiagnosis
		}
		s.SD = clone(sd.AID)
		r.ch.Session = s
		out := append(clone(sd.KDD), ks.KVN, 0x03, i)
		out = append(append(out, challenge...), cc...)
		if i&0x10 != 0 {
			out = append(out, byte(ks.Seq>>16), byte(ks.Seq>>8), byte(ks.Seq))
		}
		return out, apdu.SWOK
	case 2:
		i := sd.SCP02I
		if ks.Seq > 0xFFFF {
			return nil, apdu.SWConditionsNotSatisfied
		}
		var challenge []byte
		if i&0x40 != 0 {
			var err error
			if challenge, err = scp02Challenge(ks.key(2).Value, ks.Seq, r.sel.AID); err != nil {
				return nil, apdu.SWNoSpecificDiagnosis
			}
		} else {
			var ok bool
			if challenge, ok = r.c.readChallenge(6); !ok {
				return nil, apdu.SWNoSpecificDiagnosis
			}
		}
		s, cc, err := beginSCP02(ks, i, ks.Seq, host, challenge)
		if err != nil {
			return nil, apdu.SWNoSpecificDiagnosis
		}
		s.SD = clone(sd.AID)
		r.ch.Session = s
		out := append(clone(sd.KDD), ks.KVN, 0x02, byte(ks.Seq>>8), byte(ks.Seq))
		out = append(append(out, challenge...), cc...)
		return out, apdu.SWOK
	}
	return nil, apdu.SWReferencedDataNotFound
}

// externalAuthenticate is EXTERNAL AUTHENTICATE (GPC E.5.2, Amd D 7.1.2).
func (r *request) externalAuthenticate() ([]byte, uint16) {
	cmd := r.cmd
	s := r.ch.Session
	if !apdu.IsSecureMessaging(cmd.CLA) {
		return nil, apdu.SWSecurityNotSatisfied
	}
	if s == nil || s.Stage != stageInitialized {
		return nil, apdu.SWConditionsNotSatisfied
	}
	if cmd.P2 != 0 {
		r.ch.Session = nil
		return nil, apdu.SWIncorrectP1P2
	}
	if !validLevel(s.SCP, s.I, cmd.P1) {
		r.ch.Session = nil
		return nil, apdu.SWIncorrectP1P2
	}
	status := s.externalAuthenticate(cmd)
	if status != apdu.SWOK {
		r.ch.Session = nil
		return nil, status
	}
	if s.SCP == 2 {
		// GPC E.4.1: the sequence counter is incremented once the
		// session is established.
		if sd := r.st.find(s.SD); sd != nil {
			if ks := sd.keySet(s.KVN); ks != nil {
				ks.Seq++
			}
		}
	}
	return nil, apdu.SWOK
}

// validLevel checks the EXTERNAL AUTHENTICATE security level against the
// protocol and its i parameter (Amd D Table 5-1 and 7.1.2; GPC Table E-1).
func validLevel(scp, i, level byte) bool {
	switch scp {
	case 3:
		switch level {
		case 0x00, 0x01, 0x03:
			return true
		case 0x11, 0x13:
			return i&0x20 != 0
		case 0x33:
			return i&0x60 == 0x60
		}
	case 2:
		switch level {
		case 0x00, 0x01, 0x03:
			return true
		}
	}
	return false
}
