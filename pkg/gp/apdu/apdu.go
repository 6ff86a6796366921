// Package apdu encodes and decodes ISO/IEC 7816-4 command and response APDUs
// as GlobalPlatform cards and hosts exchange them.
//
// Parsing accepts the four ISO cases in short and extended form and never
// panics: malformed input yields a *SyntaxError that says what is wrong and
// wraps one of the sentinel errors (ErrTruncated, ErrLcMismatch, ...), so
// callers can branch with errors.Is.
package apdu

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// LeAbsent is the Command.Le value meaning "no Le field" (ISO cases 1 and 3).
const LeAbsent = -1

// Maximum sizes of the body fields (ISO/IEC 7816-4 5.1).
const (
	// MaxShortLc is the largest data field a short APDU can carry.
	MaxShortLc = 255
	// MaxShortLe is the largest Ne a short APDU can ask for (Le byte 00).
	MaxShortLe = 256
	// MaxExtendedLc is the largest data field an extended APDU can carry.
	MaxExtendedLc = 65535
	// MaxExtendedLe is the largest Ne an extended APDU can ask for (Le 0000).
	MaxExtendedLe = 65536
)

// Sentinel errors wrapped by *SyntaxError. Match them with errors.Is.
var (
	// ErrEmpty reports an empty input.
	ErrEmpty = errors.New("apdu: empty")
	// ErrTruncated reports input shorter than the 4-byte header (or a
	// response shorter than its 2-byte status word).
	ErrTruncated = errors.New("apdu: truncated")
	// ErrLcMismatch reports a body whose length does not agree with Lc.
	ErrLcMismatch = errors.New("apdu: Lc does not match the body length")
	// ErrInvalidLc reports an Lc field of zero in the extended form, which
	// ISO 7816-4 forbids (a zero-length data field is encoded by omitting Lc).
	ErrInvalidLc = errors.New("apdu: invalid Lc")
	// ErrInvalidBody reports a body that fits none of the ISO cases.
	ErrInvalidBody = errors.New("apdu: body fits no ISO 7816-4 case")
	// ErrHex reports a hex string that does not decode.
	ErrHex = errors.New("apdu: invalid hex")
	// ErrInvalidField reports a Command whose fields cannot be encoded (data
	// longer than 65535 bytes, Le out of range).
	ErrInvalidField = errors.New("apdu: field out of range")
)

// SyntaxError describes why a byte string is not a valid APDU. Err is one of
// the sentinel errors above; Offset is the byte position the problem was
// found at (-1 when not meaningful).
type SyntaxError struct {
	Err    error
	Offset int
	Detail string
}

// Error implements error.
func (e *SyntaxError) Error() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	if e.Offset >= 0 {
		return fmt.Sprintf("%v at offset %d: %s", e.Err, e.Offset, e.Detail)
	}
	return fmt.Sprintf("%v: %s", e.Err, e.Detail)
}

// Unwrap returns the sentinel error so errors.Is works.
func (e *SyntaxError) Unwrap() error { return e.Err }

func syntaxErr(err error, off int, format string, args ...any) error {
	return &SyntaxError{Err: err, Offset: off, Detail: fmt.Sprintf(format, args...)}
}

// Command is a command APDU. Le is LeAbsent (-1) when the APDU has no Le
// field; otherwise it is Ne, the maximum number of response bytes expected:
// 1..256 in short form (256 is encoded as Le byte 00) and up to 65536 in
// extended form. An Le of 0 is accepted by the encoder as an alias of the
// form's maximum (it is encoded as 00 or 0000), which is how GlobalPlatform
// texts usually write "Le = 00".
//
// Extended forces the extended length encoding even when the fields would fit
// in the short form; Parse sets it for extended APDUs so that Bytes
// reproduces the input exactly.
type Command struct {
	CLA, INS, P1, P2 byte
	Data             []byte
	Le               int
	Extended         bool
}

// Parse decodes a command APDU in any of the ISO 7816-4 cases 1, 2S, 3S, 4S,
// 2E, 3E and 4E. The returned Command's Data aliases b.
func Parse(b []byte) (Command, error) {
	if len(b) == 0 {
		return Command{}, &SyntaxError{Err: ErrEmpty, Offset: -1}
	}
	if len(b) < 4 {
		return Command{}, syntaxErr(ErrTruncated, len(b), "header needs 4 bytes, got %d", len(b))
	}
	c := Command{CLA: b[0], INS: b[1], P1: b[2], P2: b[3], Le: LeAbsent}
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
		return c, nil
	case len(body) == 1: // case 2S
		c.Le = shortLe(body[0])
		return c, nil
	case body[0] != 0: // case 3S or 4S
		lc := int(body[0])
		switch len(body) {
		case 1 + lc:
			c.Data = body[1:]
		case 2 + lc:
			c.Data = body[1 : 1+lc]
			c.Le = shortLe(body[1+lc])
		default:
			if len(body) < 1+lc {
				return Command{}, syntaxErr(ErrLcMismatch, 4, "Lc=%d but only %d data bytes follow", lc, len(body)-1)
			}
			return Command{}, syntaxErr(ErrLcMismatch, 4, "Lc=%d but %d bytes follow (expected %d, or %d with Le)", lc, len(body)-1, lc, lc+1)
		}
		return c, nil
	}
	// body[0] == 0 and at least two bytes: extended form.
	c.Extended = true
	if len(body) < 3 {
		return Command{}, syntaxErr(ErrInvalidBody, 4, "extended length marker 00 needs 2 more bytes, got %d", len(body)-1)
	}
	if len(body) == 3 { // case 2E
		c.Le = extLe(body[1:3])
		return c, nil
	}
	lc := int(binary.BigEndian.Uint16(body[1:3]))
	if lc == 0 {
		return Command{}, syntaxErr(ErrInvalidLc, 5, "extended Lc of 0000")
	}
	switch len(body) {
	case 3 + lc: // case 3E
		c.Data = body[3:]
	case 5 + lc: // case 4E
		c.Data = body[3 : 3+lc]
		c.Le = extLe(body[3+lc:])
	default:
		return Command{}, syntaxErr(ErrLcMismatch, 4, "extended Lc=%d but %d bytes follow (expected %d, or %d with Le)", lc, len(body)-3, lc, lc+2)
	}
	return c, nil
}

func shortLe(b byte) int {
	if b == 0 {
		return MaxShortLe
	}
	return int(b)
}

func extLe(b []byte) int {
	v := int(binary.BigEndian.Uint16(b))
	if v == 0 {
		return MaxExtendedLe
	}
	return v
}

// DecodeHex decodes a hex string as script routers receive it from service
// providers: spaces, tabs, line breaks and colons between bytes are ignored,
// case does not matter. Errors wrap ErrHex.
func DecodeHex(s string) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n', ':':
			return -1
		}
		return r
	}, s)
	b, err := hex.DecodeString(clean)
	if err != nil {
		var ie hex.InvalidByteError
		if errors.As(err, &ie) {
			return nil, syntaxErr(ErrHex, -1, "invalid character %q", rune(ie))
		}
		if errors.Is(err, hex.ErrLength) {
			return nil, syntaxErr(ErrHex, -1, "odd number of hex digits (%d)", len(clean))
		}
		return nil, syntaxErr(ErrHex, -1, "%v", err)
	}
	return b, nil
}

// ParseHex decodes a hex string (see DecodeHex) and parses it as a command
// APDU.
func ParseHex(s string) (Command, error) {
	b, err := DecodeHex(s)
	if err != nil {
		return Command{}, err
	}
	return Parse(b)
}

// Validate checks that s is the hex form of a syntactically valid command
// APDU. It is what a script router runs on every APDU of an SP request before
// accepting the script.
func Validate(s string) error {
	_, err := ParseHex(s)
	return err
}

// IsExtended reports whether Bytes uses the extended length encoding: when
// forced by Extended, when Data is longer than 255 bytes or when Le asks for
// more than 256 bytes.
func (c Command) IsExtended() bool {
	return c.Extended || len(c.Data) > MaxShortLc || c.Le > MaxShortLe
}

// Check reports whether the fields can be encoded.
func (c Command) Check() error {
	if len(c.Data) > MaxExtendedLc {
		return syntaxErr(ErrInvalidField, -1, "data field of %d bytes exceeds %d", len(c.Data), MaxExtendedLc)
	}
	if c.Le < LeAbsent || c.Le > MaxExtendedLe {
		return syntaxErr(ErrInvalidField, -1, "Le %d out of range", c.Le)
	}
	return nil
}

// Encode returns the wire form of c, or an error when a field is out of
// range.
func (c Command) Encode() ([]byte, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	ext := c.IsExtended()
	out := make([]byte, 0, 4+3+len(c.Data)+3)
	out = append(out, c.CLA, c.INS, c.P1, c.P2)
	if len(c.Data) > 0 {
		if ext {
			out = append(out, 0, byte(len(c.Data)>>8), byte(len(c.Data)))
		} else {
			out = append(out, byte(len(c.Data)))
		}
		out = append(out, c.Data...)
	}
	if c.Le >= 0 {
		switch {
		case ext && len(c.Data) == 0:
			out = append(out, 0, byte(c.Le>>8), byte(c.Le)) // 65536 and 0 -> 0000
		case ext:
			out = append(out, byte(c.Le>>8), byte(c.Le))
		default:
			out = append(out, byte(c.Le)) // 256 and 0 -> 00
		}
	}
	return out, nil
}

// Bytes returns the wire form of c. Out-of-range fields are clamped rather
// than reported (data is cut at 65535 bytes, an invalid Le is dropped); use
// Encode to get an error instead.
func (c Command) Bytes() []byte {
	if len(c.Data) > MaxExtendedLc {
		c.Data = c.Data[:MaxExtendedLc]
	}
	if c.Le < LeAbsent || c.Le > MaxExtendedLe {
		c.Le = LeAbsent
	}
	b, _ := c.Encode()
	return b
}

// Hex returns the wire form as uppercase hex.
func (c Command) Hex() string { return strings.ToUpper(hex.EncodeToString(c.Bytes())) }

// String implements fmt.Stringer (uppercase hex of the wire form).
func (c Command) String() string { return c.Hex() }

// HasLe reports whether the command carries an Le field.
func (c Command) HasLe() bool { return c.Le != LeAbsent }

// Ne returns the maximum number of response data bytes the command asks for:
// 0 when Le is absent, 256 or 65536 for an Le of 0 (short / extended).
func (c Command) Ne() int {
	switch {
	case c.Le < 0:
		return 0
	case c.Le == 0 && c.IsExtended():
		return MaxExtendedLe
	case c.Le == 0:
		return MaxShortLe
	}
	return c.Le
}

// Case returns the ISO 7816-4 case number 1..4 of the command.
func (c Command) Case() int {
	switch {
	case len(c.Data) == 0 && c.Le < 0:
		return 1
	case len(c.Data) == 0:
		return 2
	case c.Le < 0:
		return 3
	}
	return 4
}

// Clone returns a deep copy of c (Data no longer aliases the parse input).
func (c Command) Clone() Command {
	if c.Data != nil {
		c.Data = append([]byte(nil), c.Data...)
	}
	return c
}

// Response is a response APDU: the data field and the status word SW1SW2.
type Response struct {
	Data []byte
	SW   uint16
}

// ParseResponse splits a response APDU into data and status word. It needs at
// least the two status bytes. Data aliases b.
func ParseResponse(b []byte) (Response, error) {
	if len(b) == 0 {
		return Response{}, &SyntaxError{Err: ErrEmpty, Offset: -1}
	}
	if len(b) < 2 {
		return Response{}, syntaxErr(ErrTruncated, len(b), "response needs SW1 SW2, got %d byte", len(b))
	}
	n := len(b) - 2
	r := Response{SW: binary.BigEndian.Uint16(b[n:])}
	if n > 0 {
		r.Data = b[:n]
	}
	return r, nil
}

// ParseResponseHex decodes a hex string (see DecodeHex) and parses it as a
// response APDU.
func ParseResponseHex(s string) (Response, error) {
	b, err := DecodeHex(s)
	if err != nil {
		return Response{}, err
	}
	return ParseResponse(b)
}

// Bytes returns data || SW1 || SW2.
func (r Response) Bytes() []byte {
	out := make([]byte, 0, len(r.Data)+2)
	out = append(out, r.Data...)
	return append(out, byte(r.SW>>8), byte(r.SW))
}

// Hex returns the wire form as uppercase hex.
func (r Response) Hex() string { return strings.ToUpper(hex.EncodeToString(r.Bytes())) }

// SW1 returns the first status byte.
func (r Response) SW1() byte { return byte(r.SW >> 8) }

// SW2 returns the second status byte.
func (r Response) SW2() byte { return byte(r.SW) }

// OK reports whether the status word is 9000.
func (r Response) OK() bool { return r.SW == SWOK }
