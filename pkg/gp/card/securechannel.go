package card

import (
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/scp02"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
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
		keys := scp03.StaticKeys{ENC: ks.key(1).Value, MAC: ks.key(2).Value, DEK: ks.key(3).Value}
		i := sd.SCP03I
		var challenge []byte
		var opts []scp03.CardOption
		if i&scp03.IPseudoRandom != 0 {
			// Pseudo-random card challenge (Amd D 6.2.2.1): the key set's
			// counter is incremented before use and never wraps.
			if ks.Seq >= 0xFFFFFF {
				return nil, apdu.SWConditionsNotSatisfied
			}
			ks.Seq++
			opts = append(opts, scp03.WithSequenceCounter(ks.Seq), scp03.WithSDAID(sd.AID))
		} else {
			var ok bool
			if challenge, ok = r.c.readChallenge(8); !ok {
				return nil, apdu.SWNoSpecificDiagnosis
			}
		}
		cs, resp, err := scp03.BeginCard(keys, ks.KVN, i, sd.KDD, host, challenge, opts...)
		if err != nil {
			return nil, apdu.SWOf(err, apdu.SWNoSpecificDiagnosis)
		}
		r.ch.Session = &session{SD: clone(sd.AID), SCP03: &cs}
		return resp, apdu.SWOK
	case 2:
		keys := scp02.StaticKeys{ENC: ks.key(1).Value, MAC: ks.key(2).Value, DEK: ks.key(3).Value}
		i := sd.SCP02I
		if ks.Seq > 0xFFFF {
			return nil, apdu.SWConditionsNotSatisfied
		}
		var challenge []byte
		var opts []scp02.CardOption
		if i&scp02.IPseudoRandom != 0 {
			// GPC E.4.2.1: derived from the AID of the selected application.
			opts = append(opts, scp02.WithAID(r.sel.AID))
		} else {
			var ok bool
			if challenge, ok = r.c.readChallenge(scp02.CardChallengeLength); !ok {
				return nil, apdu.SWNoSpecificDiagnosis
			}
		}
		cs, resp, err := scp02.BeginCard(keys, ks.KVN, i, sd.KDD, uint16(ks.Seq), host, challenge, opts...)
		if err != nil {
			return nil, apdu.SWOf(err, apdu.SWNoSpecificDiagnosis)
		}
		r.ch.Session = &session{SD: clone(sd.AID), SCP02: &cs}
		return resp, apdu.SWOK
	}
	return nil, apdu.SWReferencedDataNotFound
}

// externalAuthenticate is EXTERNAL AUTHENTICATE (GPC E.5.2, Amd D 7.1.2).
// The security level, host cryptogram and C-MAC checks are the shared
// session's; a failure ends the half-open session.
func (r *request) externalAuthenticate() ([]byte, uint16) {
	cmd := r.cmd
	s := r.ch.Session
	if !apdu.IsSecureMessaging(cmd.CLA) {
		return nil, apdu.SWSecurityNotSatisfied
	}
	if !s.initiated() {
		return nil, apdu.SWConditionsNotSatisfied
	}
	if err := s.externalAuthenticate(cmd); err != nil {
		r.ch.Session = nil
		return nil, apdu.SWOf(err, apdu.SWSecurityNotSatisfied)
	}
	if s.SCP02 != nil {
		// GPC E.4.1: the sequence counter is incremented once the session
		// is established (EXTERNAL AUTHENTICATE carries its first C-MAC).
		if sd := r.st.find(s.SD); sd != nil {
			if ks := sd.keySet(s.SCP02.KVN); ks != nil {
				ks.Seq++
			}
		}
	}
	return nil, apdu.SWOK
}
