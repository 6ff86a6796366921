package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
)

// TypedHandler handles one decoded event of a known type.
type TypedHandler[T any] func(ctx context.Context, d *Delivery, data T) error

// Typed adapts a handler for one CloudEvents type: it checks the delivery is
// a valid CloudEvent of ceType, validates its data against the type's JSON
// Schema (when schemas has one), decodes it into T and calls h. A message that
// fails any check is dead-lettered with the reason (the reason names JSON
// locations, never data values); h's own result maps as for any Handler: nil
// acks, Permanent dead-letters, anything else is retried in place.
func Typed[T any](schemas *Schemas, ceType string, log *slog.Logger, h TypedHandler[T]) Handler {
	if log == nil {
		log = slog.Default()
	}
	return func(ctx context.Context, d *Delivery) error {
		var raw json.RawMessage
		if err := d.DecodeAs(ceType, &raw); err != nil {
			return Permanent(err)
		}
		if err := schemas.CheckEvent(d.Event, log); err != nil {
			return Permanent(err)
		}
		var data T
		if err := json.Unmarshal(raw, &data); err != nil {
			return Permanent(fmt.Errorf("data of %s: %w", ceType, err))
		}
		return h(ctx, d, data)
	}
}
