// Package domain holds the script router's rules: what makes a script
// acceptable (ISO 7816-4 syntax, per-conversation limits, securing mode) and
// how the response APDUs of an executed script turn into the send-script
// response an SP receives. It knows nothing of NATS, CloudEvents or bbolt.
package domain

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
)

// Limits bound one script. They come from the conversation (which took them
// from the MNO record); a zero field means "use the router's default".
type Limits struct {
	// MaxAPDUs is the largest number of C-APDUs in one script.
	MaxAPDUs int
	// MaxBytes is the largest sum of C-APDU lengths (decoded bytes) in one script.
	MaxBytes int
}

// WithDefaults fills the zero fields of l from def.
func (l Limits) WithDefaults(def Limits) Limits {
	if l.MaxAPDUs <= 0 {
		l.MaxAPDUs = def.MaxAPDUs
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = def.MaxBytes
	}
	return l
}

// Rejection is why a script is refused before it reaches the SE: the error
// the SP gets and, where single commands are at fault, one entry per command.
type Rejection struct {
	Err    *contract.Error
	Failed []contract.ScriptFailure
}

// Reject builds a Rejection without per-command entries.
func Reject(code contract.Code, format string, args ...any) *Rejection {
	return &Rejection{Err: contract.Errorf(code, format, args...)}
}

// Command is one validated C-APDU of a script.
type Command struct {
	// Index is the 0-based position in the script (the SP's commands array).
	Index int
	// Hex is the canonical form forwarded to the SE: uppercase hex without
	// separators. The bytes are the SP's, untouched.
	Hex string
	// APDU is the parsed command; its header is what authorization looks at.
	APDU apdu.Command
}

// Securing modes.
const (
	securingEndToEnd = contract.SecuringEndToEnd
	securingCentral  = contract.SecuringCentral
)

// CheckSecuring accepts end-to-end (the default when empty) and central
// (whether the router may secure the script is decided later, from the keys
// it holds) and refuses the rest.
func CheckSecuring(securing string) *Rejection {
	switch securing {
	case "", securingEndToEnd, securingCentral:
		return nil
	}
	return Reject(contract.CodeInvalidArgument, "securing %q is not supported: use %q or %q", truncate(securing, 32),
		securingEndToEnd, securingCentral)
}

// IsCentral reports whether securing asks for the central TSM's secure channel.
func IsCentral(securing string) bool { return securing == securingCentral }

// CheckCentralCommands checks what a script secured by the central TSM must
// be: plain commands on the basic channel (the router's session runs there),
// without a secure channel of their own. The router opens the session
// (SELECT, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE) itself.
func CheckCentralCommands(commands []Command) *Rejection {
	for _, c := range commands {
		var reason string
		switch {
		case apdu.LogicalChannel(c.APDU.CLA) != 0:
			reason = fmt.Sprintf("CLA %02X addresses logical channel %d, but with securing central the central TSM's secure channel runs on the basic channel: send the commands with a CLA of channel 0",
				c.APDU.CLA, apdu.LogicalChannel(c.APDU.CLA))
		case apdu.IsSecureMessaging(c.APDU.CLA):
			reason = fmt.Sprintf("CLA %02X indicates secure messaging, but with securing central the central TSM wraps the commands: send them plain (CLA without secure messaging)", c.APDU.CLA)
		case c.APDU.INS == insInitUpdate || c.APDU.INS == insExternalAuth:
			reason = fmt.Sprintf("%s: with securing central the central TSM opens the secure channel itself; send only the commands to run in it",
				gpCommandNames[c.APDU.INS])
		case c.APDU.INS == insManageChannel:
			reason = "MANAGE CHANNEL: with securing central the script runs on the basic channel only"
		}
		if reason != "" {
			return &Rejection{Err: contract.Errorf(contract.CodeInvalidArgument, "command %d: %s", c.Index, reason),
				Failed: []contract.ScriptFailure{{Index: c.Index, Command: failedCommand(c), Reason: reason}}}
		}
	}
	return nil
}

// ValidateScript checks a script in the order an SP would want to fix it:
// securing mode, an empty script, the APDU count, the syntax of every command
// and finally the total size. It returns the parsed commands, or a Rejection
// that names the limit and the actual value, or every malformed command by
// its 0-based index. It never panics, whatever the input (see the fuzz test).
func ValidateScript(commands []string, securing string, limits Limits) ([]Command, *Rejection) {
	if rej := CheckSecuring(securing); rej != nil {
		return nil, rej
	}
	if len(commands) == 0 {
		return nil, Reject(contract.CodeInvalidArgument, "commands is empty: send at least one C-APDU")
	}
	if limits.MaxAPDUs > 0 && len(commands) > limits.MaxAPDUs {
		return nil, Reject(contract.CodeScriptTooLarge,
			"the script has %d APDUs but at most %d are allowed per script in this conversation: split it into several scripts",
			len(commands), limits.MaxAPDUs)
	}
	out := make([]Command, 0, len(commands))
	var failed []contract.ScriptFailure
	total := 0
	for i, s := range commands {
		c, reason := parseCommand(s)
		if reason != "" {
			failed = append(failed, contract.ScriptFailure{Index: i, Command: s, Reason: reason})
			continue
		}
		c.Index = i
		total += len(c.APDU.Bytes())
		out = append(out, c)
	}
	if len(failed) > 0 {
		msg := fmt.Sprintf("command %d: %s", failed[0].Index, failed[0].Reason)
		if n := len(failed) - 1; n == 1 {
			msg += "; 1 more command is malformed (see failed)"
		} else if n > 1 {
			msg += fmt.Sprintf("; %d more commands are malformed (see failed)", n)
		}
		return nil, &Rejection{Err: &contract.Error{Code: contract.CodeInvalidArgument, Message: msg}, Failed: failed}
	}
	if limits.MaxBytes > 0 && total > limits.MaxBytes {
		return nil, Reject(contract.CodeScriptTooLarge,
			"the script has %d bytes of APDUs but at most %d bytes are allowed per script in this conversation: split it into several scripts",
			total, limits.MaxBytes)
	}
	return out, nil
}

// parseCommand decodes and parses one C-APDU; reason is empty when it is valid.
// Reasons describe the structure (lengths, reserved header values) and never
// echo data bytes.
func parseCommand(s string) (Command, string) {
	b, reason := decodeHex(s)
	if reason != "" {
		return Command{}, "not a hex string: " + reason
	}
	c, err := apdu.Parse(b)
	if err != nil {
		return Command{}, describeSyntax(b, err)
	}
	if !apdu.ValidCLA(c.CLA) {
		return Command{}, fmt.Sprintf("CLA %02X is reserved by ISO 7816-4 (FF, 20-3F and A0-BF are not command classes)", c.CLA)
	}
	if hi := c.INS & 0xF0; hi == 0x60 || hi == 0x90 {
		return Command{}, fmt.Sprintf("INS %02X is not a valid instruction (6X and 9X are status bytes)", c.INS)
	}
	return Command{Hex: fmt.Sprintf("%X", b), APDU: c}, ""
}

// decodeHex decodes a command as the public contract spells it: hex digits
// only, upper- or lowercase, no separators (the send-script schema's pattern).
// The reason names the offending position, never the surrounding bytes.
func decodeHex(s string) ([]byte, string) {
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			if s[i] == ' ' || s[i] == ':' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' {
				return nil, fmt.Sprintf("separator at position %d: write the APDU as one hex string without spaces", i)
			}
			return nil, fmt.Sprintf("invalid character at position %d: use hex digits 0-9 and A-F only", i)
		}
	}
	if len(s)%2 != 0 {
		return nil, fmt.Sprintf("odd number of hex digits (%d)", len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, "invalid hex"
	}
	return b, ""
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// describeSyntax turns an apdu parse error into a sentence about lengths.
func describeSyntax(b []byte, err error) string {
	switch {
	case errors.Is(err, apdu.ErrEmpty):
		return "empty command: a C-APDU has at least the 4 header bytes CLA INS P1 P2"
	case errors.Is(err, apdu.ErrTruncated):
		return fmt.Sprintf("the header needs 4 bytes (CLA INS P1 P2) but the command has %d", len(b))
	case errors.Is(err, apdu.ErrLcMismatch):
		return describeLcMismatch(b)
	case errors.Is(err, apdu.ErrInvalidLc):
		return "extended Lc 0000 is not allowed: omit Lc when there is no data"
	case errors.Is(err, apdu.ErrInvalidBody):
		return "the extended length marker 00 must be followed by 2 more length bytes"
	}
	return syntaxDetail(err)
}

// describeLcMismatch says how many data bytes Lc announces and how many follow.
func describeLcMismatch(b []byte) string {
	if len(b) >= 7 && b[4] == 0 {
		lc := int(b[5])<<8 | int(b[6])
		follow := len(b) - 7
		if follow < lc {
			return fmt.Sprintf("extended Lc says %d bytes but %d follow", lc, follow)
		}
		return fmt.Sprintf("extended Lc says %d bytes but %d follow (expected %d, or %d with an extended Le)", lc, follow, lc, lc+2)
	}
	if len(b) < 5 {
		return "Lc does not match the data length"
	}
	lc := int(b[4])
	follow := len(b) - 5
	if follow < lc {
		return fmt.Sprintf("Lc says %d bytes but %d follow", lc, follow)
	}
	return fmt.Sprintf("Lc says %d bytes but %d follow (expected %d, or %d with Le)", lc, follow, lc, lc+1)
}

// syntaxDetail returns the detail of an *apdu.SyntaxError without the
// sentinel prefix, or the error text.
func syntaxDetail(err error) string {
	var se *apdu.SyntaxError
	if errors.As(err, &se) && se.Detail != "" {
		return se.Detail
	}
	return err.Error()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
