package bus

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/tsmhub/tsmhub/schemas"
)

// Schemas validates event data against the JSON Schema of its CloudEvents
// type, as published in schemas/.
type Schemas struct {
	mu       sync.Mutex
	compiled map[string]*jsonschema.Schema
	compiler *jsonschema.Compiler
	// skipInternal turns CheckEvent off for internal event types.
	skipInternal atomic.Bool
}

// LoadSchemas compiles every embedded schema.
func LoadSchemas() (*Schemas, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	fsys := schemas.FS()
	names, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", n, err)
		}
		if err := c.AddResource(schemas.BaseURL+n, doc); err != nil {
			return nil, fmt.Errorf("schema %s: %w", n, err)
		}
	}
	s := &Schemas{compiled: map[string]*jsonschema.Schema{}, compiler: c}
	for _, n := range names {
		typ := strings.TrimSuffix(n, ".json")
		sch, err := c.Compile(schemas.BaseURL + n)
		if err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", n, err)
		}
		s.compiled[typ] = sch
	}
	return s, nil
}

// Has reports whether ceType has a schema.
func (s *Schemas) Has(ceType string) bool {
	_, ok := s.compiled[ceType]
	return ok
}

// SetCheckInternal sets whether CheckEvent validates internal events: the
// tsmhub.* types that the services emit to each other (on after
// LoadSchemas). The public contract's types (tsm.*: what SPs send and are
// sent) are checked either way, and Validate always checks. Internal events
// are built from Go types by tsmhub's own code and checked against their
// schemas in its tests; validating every one on consume costs ~6 % of the
// stack's CPU at the maximum rate (BENCHMARKS.md), so production services
// turn it off (servicekit, VALIDATE_INTERNAL_EVENTS).
func (s *Schemas) SetCheckInternal(on bool) { s.skipInternal.Store(!on) }

// internalType reports whether ceType is one of tsmhub's internal event
// types rather than a public contract type (tsm.<op>.request, ...).
func internalType(ceType string) bool { return !strings.HasPrefix(ceType, "tsm.") }

// Validate checks data against the schema of ceType. The error lists what is
// wrong by JSON pointer, in words an SP integrator can act on.
func (s *Schemas) Validate(ceType string, data []byte) error {
	sch, ok := s.compiled[ceType]
	if !ok {
		return fmt.Errorf("no schema for event type %q", ceType)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("data is not valid JSON: %v", err)
	}
	if err := sch.Validate(v); err != nil {
		if ve, ok := err.(*jsonschema.ValidationError); ok {
			return fmt.Errorf("%s", describe(ve))
		}
		return err
	}
	return nil
}

// CheckEvent validates the data of ev against the published schema of its
// type, when there is one (a nil Schemas checks nothing; internal types
// only while SetCheckInternal is on). The returned error,
// and the warning it logs, name the JSON locations at fault only: Validate's
// message quotes offending values, which may be APDU data.
func (s *Schemas) CheckEvent(ev event.Event, log *slog.Logger) error {
	ceType := ev.Type()
	if s == nil || !s.Has(ceType) || (s.skipInternal.Load() && internalType(ceType)) {
		return nil
	}
	err := s.Validate(ceType, ev.Data())
	if err == nil {
		return nil
	}
	var at []string
	for _, m := range schemaLocations.FindAllStringSubmatch(err.Error(), 5) {
		at = append(at, m[1])
	}
	locations := strings.Join(at, ", ")
	log.Warn("event does not match its schema", "type", ceType, "eventId", ev.ID(), "at", locations)
	return fmt.Errorf("data does not match the %s schema at %s", ceType, locations)
}

// schemaLocations finds the JSON pointers in Validate's message
// ("at /commands/1: ...; at /seId: ...").
var schemaLocations = regexp.MustCompile(`(?:^|; )at (/[^:\s]*):`)

var englishPrinter = message.NewPrinter(language.English)

// describe flattens a validation error into "at /path: message" lines.
func describe(ve *jsonschema.ValidationError) string {
	var lines []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			loc := "/" + strings.Join(e.InstanceLocation, "/")
			lines = append(lines, fmt.Sprintf("at %s: %s", loc, e.ErrorKind.LocalizedString(englishPrinter)))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	sort.Strings(lines)
	if len(lines) > 5 {
		lines = append(lines[:5], fmt.Sprintf("and %d more", len(lines)-5))
	}
	return strings.Join(lines, "; ")
}
