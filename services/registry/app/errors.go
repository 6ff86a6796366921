package app

import (
	"errors"
	"fmt"

	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// ErrorKind classifies a use-case failure; each port maps it to its own
// vocabulary (HTTP status, public contract error code).
type ErrorKind string

// Error kinds.
const (
	// KindInvalid: the input is wrong; Fields says where.
	KindInvalid ErrorKind = "invalid"
	// KindNotFound: the entity addressed does not exist.
	KindNotFound ErrorKind = "not-found"
	// KindConflict: the change collides with another entity (an MSI held by
	// another SE) or with the content of the SE (a service already deployed).
	KindConflict ErrorKind = "conflict"
	// KindNotAllowed: the entity exists but the operation is not allowed on it
	// (an expired SE).
	KindNotAllowed ErrorKind = "not-allowed"
	// KindInaccessible: the SE cannot be reached (lost or stolen).
	KindInaccessible ErrorKind = "inaccessible"
	// KindNoEligibleSE: the SE does not meet the platform's or the catalog
	// entry's requirements for pre-personalize.
	KindNoEligibleSE ErrorKind = "no-eligible-se"
	// KindInternal: the registry's own data is inconsistent (an SE whose MNO
	// record is missing).
	KindInternal ErrorKind = "internal"
)

// Error is a use-case failure that a client can act on. Message says what to
// fix; it names ids and MSI types but never an MSI value or a key.
type Error struct {
	Kind    ErrorKind
	Message string
	// Fields lists per-field problems (KindInvalid).
	Fields []domain.FieldError
}

func (e *Error) Error() string { return e.Message }

func errorf(kind ErrorKind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// invalidField is a KindInvalid error about one field.
func invalidField(field, format string, args ...any) *Error {
	detail := fmt.Sprintf(format, args...)
	return &Error{Kind: KindInvalid, Message: field + ": " + detail,
		Fields: []domain.FieldError{{Field: field, Detail: detail}}}
}

// fromValidation turns a domain validation error into a KindInvalid error and
// passes any other error through.
func fromValidation(err error) error {
	var ve *domain.ValidationError
	if errors.As(err, &ve) {
		return &Error{Kind: KindInvalid, Message: ve.Error(), Fields: ve.Fields}
	}
	return err
}

// AsError returns the use-case error inside err, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
