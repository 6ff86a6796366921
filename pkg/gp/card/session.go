package card

import (
	"bytes"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/scp02"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
)

// session is the secure channel of one logical channel (GPC 10.2, Amd D 6,
// GPC Appendix E): the shared card-side session of the protocol in use
// (exactly one of SCP03 and SCP02 is set) and the SD whose key set opened
// it. Cryptography, MAC chaining, counters, the security level rules and the
// abort state are the shared packages'; the card decides which SD runs the
// channel, keeps the sequence counters of its key sets and gates commands
// on the session (securechannel.go, transmit.go). Every field is plain data,
// so a card persisted in the middle of a session continues it after a restore.
type session struct {
	// SD is the AID of the security domain that answered INITIALIZE UPDATE.
	SD    []byte             `json:"sd"`
	SCP03 *scp03.CardSession `json:"scp03,omitempty"`
	SCP02 *scp02.CardSession `json:"scp02,omitempty"`
}

// cardSession is what the card needs of scp03.CardSession and
// scp02.CardSession.
type cardSession interface {
	ExternalAuthenticate(apdu.Command) error
	UnwrapCommand(apdu.Command) (apdu.Command, error)
	WrapResponse(data []byte, sw uint16) []byte
	DecryptKey(block []byte) ([]byte, error)
	Authenticated() bool
}

var (
	_ cardSession = (*scp03.CardSession)(nil)
	_ cardSession = (*scp02.CardSession)(nil)
)

func (s *session) proto() cardSession {
	switch {
	case s == nil:
		return nil
	case s.SCP03 != nil:
		return s.SCP03
	case s.SCP02 != nil:
		return s.SCP02
	}
	return nil
}

// valid reports whether a (restored) session names its SD and carries
// exactly one protocol.
func (s *session) valid() bool {
	return s != nil && len(s.SD) > 0 && (s.SCP03 == nil) != (s.SCP02 == nil)
}

// initiated reports whether INITIALIZE UPDATE was answered and EXTERNAL
// AUTHENTICATE is expected.
func (s *session) initiated() bool {
	switch {
	case s == nil:
		return false
	case s.SCP03 != nil:
		return s.SCP03.State == scp03.StateInitiated
	case s.SCP02 != nil:
		return s.SCP02.State == scp02.StateInitiated
	}
	return false
}

func (s *session) authenticated() bool {
	p := s.proto()
	return p != nil && p.Authenticated()
}

// level is the security level set by EXTERNAL AUTHENTICATE.
func (s *session) level() byte {
	switch {
	case s == nil:
		return 0
	case s.SCP03 != nil:
		return s.SCP03.Level
	case s.SCP02 != nil:
		return s.SCP02.Level
	}
	return 0
}

var errNoSession = apdu.NewStatusError(apdu.SWConditionsNotSatisfied, scp03.ErrSessionState)

// externalAuthenticate checks EXTERNAL AUTHENTICATE (Amd D 7.1.2, GPC
// E.5.2); errors carry the status word (apdu.SWOf).
func (s *session) externalAuthenticate(cmd apdu.Command) error {
	p := s.proto()
	if p == nil {
		return errNoSession
	}
	return p.ExternalAuthenticate(cmd)
}

// unwrap verifies and strips the protection of a command at the session's
// level (Amd D 6.2.4, 6.2.6; GPC E.4.4, E.4.5). cmd.Data is the whole data
// field of the unsegmented command (chained segments already concatenated).
// Any failure aborts the session; the error carries the status word.
func (s *session) unwrap(cmd apdu.Command) (apdu.Command, error) {
	p := s.proto()
	if p == nil {
		return apdu.Command{}, errNoSession
	}
	return p.UnwrapCommand(cmd)
}

// wrapResponse applies R-ENCRYPTION and R-MAC (Amd D 6.2.5, 6.2.7) as the
// session level asks and returns the full R-APDU.
func (s *session) wrapResponse(data []byte, sw uint16) []byte {
	p := s.proto()
	if p == nil {
		return apdu.Response{Data: data, SW: sw}.Bytes()
	}
	return p.WrapResponse(data, sw)
}

// decryptKey decrypts a PUT KEY / DGI 8113 key value: SCP03 AES-CBC under
// the static DEK (Amd D 7.2), SCP02 3DES-ECB under the DEK session key
// (GPC E.4.7).
func (s *session) decryptKey(enc []byte) ([]byte, error) {
	p := s.proto()
	if p == nil {
		return nil, errNoSession
	}
	return p.DecryptKey(enc)
}

func clone(b []byte) []byte { return bytes.Clone(b) }
