// Package domain holds the registry's entities (MNOs, SPs, catalog services,
// SEs) and the rules on their fields. It knows nothing of storage, HTTP or the
// bus: constructors take what a client sent, as strings, and return either a
// valid entity or a ValidationError naming every field to fix.
package domain

import (
	"fmt"
	"strings"
)

// FieldError is one problem with one input field.
type FieldError struct {
	// Field is the JSON name of the field (with an index for list items,
	// e.g. preIssuedSpDomains[1].aid).
	Field string `json:"field"`
	// Detail says what is wrong and what to send instead. It never repeats a
	// key value or a personal datum the client sent.
	Detail string `json:"detail"`
}

// ValidationError lists every field problem of one input, so a client can fix
// them all in one round trip.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Detail
	}
	return strings.Join(parts, "; ")
}

// fieldErrors collects problems while an input is checked.
type fieldErrors []FieldError

func (f *fieldErrors) add(field, format string, args ...any) {
	*f = append(*f, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
}

// err returns nil when nothing was collected (a typed nil would not be nil).
func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return &ValidationError{Fields: f}
}
