package domain

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
)

// ErrBadScript marks a script whose commands cannot even be handed to a card
// (not hex): nothing of it is executed.
var ErrBadScript = errors.New("script rejected")

// Script is a sequence of command APDUs for one card, run in order.
type Script struct {
	// Commands are the C-APDUs as bytes.
	Commands [][]byte
	// ContinueOnError runs every command even after a failing one.
	ContinueOnError bool
}

// ParseScript decodes the hex C-APDUs of a script. The card judges APDU
// syntax itself (a malformed APDU gets 6700 as on a real card); only text
// that is not hex is refused here, naming the command's index and never its
// content.
func ParseScript(commands []string, continueOnError bool) (Script, error) {
	s := Script{Commands: make([][]byte, 0, len(commands)), ContinueOnError: continueOnError}
	for i, c := range commands {
		b, err := apdu.DecodeHex(c)
		if err != nil {
			return Script{}, fmt.Errorf("%w: command %d is not a hex APDU (%d characters)", ErrBadScript, i, len(c))
		}
		if len(b) == 0 {
			return Script{}, fmt.Errorf("%w: command %d is empty", ErrBadScript, i)
		}
		s.Commands = append(s.Commands, b)
	}
	return s, nil
}

// Transmitter is a card: it answers one C-APDU with an R-APDU (data || SW).
type Transmitter interface {
	Transmit(capdu []byte) []byte
}

// Outcome is what running a script produced.
type Outcome struct {
	// Responses are the R-APDUs of the commands executed, in order; there are
	// fewer than commands when the script stopped at a failure.
	Responses [][]byte
}

// Executed is the number of commands the card received.
func (o Outcome) Executed() int { return len(o.Responses) }

// HexResponses returns the R-APDUs as uppercase hex (never nil, so an empty
// result encodes as a JSON array).
func (o Outcome) HexResponses() []string {
	out := make([]string, len(o.Responses))
	for i, r := range o.Responses {
		out[i] = strings.ToUpper(hex.EncodeToString(r))
	}
	return out
}

// Run sends the commands to the card in order. It stops after the first
// response whose status word is not a success (events.CommandSucceeded: the
// rule the script router reports failures with) unless ContinueOnError.
func (s Script) Run(card Transmitter) Outcome {
	out := Outcome{Responses: make([][]byte, 0, len(s.Commands))}
	for _, c := range s.Commands {
		r := card.Transmit(c)
		out.Responses = append(out.Responses, r)
		if !s.ContinueOnError && !events.CommandSucceeded(StatusWord(r)) {
			break
		}
	}
	return out
}

// StatusWord returns SW1 SW2 of an R-APDU (0 if it is shorter than 2 bytes,
// which no card answers and which counts as a failure).
func StatusWord(rapdu []byte) uint16 {
	if len(rapdu) < 2 {
		return 0
	}
	return uint16(rapdu[len(rapdu)-2])<<8 | uint16(rapdu[len(rapdu)-1])
}
