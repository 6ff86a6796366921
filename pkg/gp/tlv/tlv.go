// Package tlv is a BER-TLV codec tolerant in the ways GlobalPlatform data
// needs (GPC v2.3.1 11.1.4 and ISO/IEC 7816-4 5.2): multi-byte tags (9F70,
// BF3E, DF01...), short and long lengths (81 xx, 82 xx xx, 83, 84) and, on
// request, a lone 80 read as a length of 128, as some INSTALL data fields are
// written. It also has the plain LV helpers GP uses inside INSTALL data
// fields.
//
// Parsing never panics: a length that runs past the buffer, an unterminated
// tag or an unsupported length form is an error (*Error wrapping a sentinel).
package tlv

import (
	"errors"
	"fmt"
)

// Sentinel errors wrapped by *Error.
var (
	// ErrTruncated: the input ends inside a tag, a length or a value.
	ErrTruncated = errors.New("tlv: truncated")
	// ErrTagTooLong: a tag of more than 4 bytes (it would not fit a uint32).
	ErrTagTooLong = errors.New("tlv: tag longer than 4 bytes")
	// ErrLength: an unsupported length form (indefinite length 80 when not
	// accepted as 128, or more than 4 length bytes).
	ErrLength = errors.New("tlv: unsupported length encoding")
	// ErrNotConstructed: Children called on a primitive data object.
	ErrNotConstructed = errors.New("tlv: not a constructed data object")
	// ErrValueTooLong: a value too long to encode.
	ErrValueTooLong = errors.New("tlv: value too long")
)

// Error reports where parsing stopped.
type Error struct {
	Err    error
	Offset int
	Detail string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("%v at offset %d", e.Err, e.Offset)
	}
	return fmt.Sprintf("%v at offset %d: %s", e.Err, e.Offset, e.Detail)
}

// Unwrap returns the sentinel error.
func (e *Error) Unwrap() error { return e.Err }

func perr(err error, off int, format string, args ...any) error {
	return &Error{Err: err, Offset: off, Detail: fmt.Sprintf(format, args...)}
}

// TLV is one BER-TLV data object. Tag holds the tag bytes big-endian (9F70
// is 0x9F70). Value aliases the parsed buffer; Raw is the complete encoding
// (tag, length and value) as it appeared in the input, nil for objects built
// in code.
type TLV struct {
	Tag   uint32
	Value []byte
	Raw   []byte
}

// Options tune the parser.
type Options struct {
	// Accept80As128 reads a length byte 80 (BER indefinite length, which GP
	// data never uses) as a length of 128. Some off-card tools write 128-byte
	// fields this way (gp-card.md 2.3).
	Accept80As128 bool
	// SkipPadding skips 00 and FF bytes between data objects (ISO/IEC 7816-4
	// 5.2 allows them before, between and after objects).
	SkipPadding bool
}

// Parse decodes a sequence of BER-TLV data objects filling all of b. It is
// strict: a length byte 80 is an error. Use ParseWith for the GP tolerances.
func Parse(b []byte) ([]TLV, error) { return ParseWith(b, Options{}) }

// ParseWith is Parse with options.
func ParseWith(b []byte, o Options) ([]TLV, error) {
	var out []TLV
	off := 0
	for off < len(b) {
		if o.SkipPadding && (b[off] == 0x00 || b[off] == 0xFF) {
			off++
			continue
		}
		t, n, err := parseOne(b[off:], off, o)
		if err != nil {
			return out, err
		}
		out = append(out, t)
		off += n
	}
	return out, nil
}

// ParseOne decodes the first data object of b and returns it with the rest
// of the input.
func ParseOne(b []byte) (TLV, []byte, error) {
	t, n, err := parseOne(b, 0, Options{})
	if err != nil {
		return TLV{}, b, err
	}
	return t, b[n:], nil
}

func parseOne(b []byte, base int, o Options) (TLV, int, error) {
	tag, tn, err := readTag(b, base)
	if err != nil {
		return TLV{}, 0, err
	}
	l, ln, err := readLength(b[tn:], base+tn, o.Accept80As128)
	if err != nil {
		return TLV{}, 0, err
	}
	start := tn + ln
	if l > len(b)-start {
		return TLV{}, 0, perr(ErrTruncated, base+tn, "length %d but %d bytes left", l, len(b)-start)
	}
	end := start + l
	return TLV{Tag: tag, Value: b[start:end:end], Raw: b[:end:end]}, end, nil
}

// readTag reads a BER tag: one byte, or, when its low five bits are all set,
// further bytes while b8 is set. Tags are limited to 4 bytes.
func readTag(b []byte, base int) (uint32, int, error) {
	if len(b) == 0 {
		return 0, 0, perr(ErrTruncated, base, "missing tag")
	}
	tag := uint32(b[0])
	if b[0]&0x1F != 0x1F {
		return tag, 1, nil
	}
	for i := 1; ; i++ {
		if i >= len(b) {
			return 0, 0, perr(ErrTruncated, base+i, "unterminated tag")
		}
		if i >= 4 {
			return 0, 0, perr(ErrTagTooLong, base, "")
		}
		tag = tag<<8 | uint32(b[i])
		if b[i]&0x80 == 0 {
			return tag, i + 1, nil
		}
	}
}

// readLength reads a BER length: 00-7F, or 81-84 followed by 1-4 bytes.
func readLength(b []byte, base int, accept80 bool) (int, int, error) {
	if len(b) == 0 {
		return 0, 0, perr(ErrTruncated, base, "missing length")
	}
	first := b[0]
	switch {
	case first < 0x80:
		return int(first), 1, nil
	case first == 0x80:
		if accept80 {
			return 128, 1, nil
		}
		return 0, 0, perr(ErrLength, base, "indefinite length 80")
	case first > 0x84:
		return 0, 0, perr(ErrLength, base, "length form %02X", first)
	}
	n := int(first & 0x7F)
	if len(b) < 1+n {
		return 0, 0, perr(ErrTruncated, base, "length needs %d bytes", n)
	}
	var l uint64
	for _, c := range b[1 : 1+n] {
		l = l<<8 | uint64(c)
	}
	if l > uint64(maxInt) {
		return 0, 0, perr(ErrLength, base, "length %d", l)
	}
	return int(l), 1 + n, nil
}

const maxInt = int(^uint(0) >> 1)

// TagBytes returns the encoded form of a tag held in a uint32 (leading zero
// bytes dropped; tag 0 encodes as 00).
func TagBytes(tag uint32) []byte {
	switch {
	case tag > 0xFFFFFF:
		return []byte{byte(tag >> 24), byte(tag >> 16), byte(tag >> 8), byte(tag)}
	case tag > 0xFFFF:
		return []byte{byte(tag >> 16), byte(tag >> 8), byte(tag)}
	case tag > 0xFF:
		return []byte{byte(tag >> 8), byte(tag)}
	}
	return []byte{byte(tag)}
}

// LengthBytes returns the minimal BER length encoding of n (0-7F, 81 xx,
// 82 xx xx, 83 ..., 84 ...). Negative n encodes as 0.
func LengthBytes(n int) []byte {
	switch {
	case n < 0:
		return []byte{0}
	case n < 0x80:
		return []byte{byte(n)}
	case n <= 0xFF:
		return []byte{0x81, byte(n)}
	case n <= 0xFFFF:
		return []byte{0x82, byte(n >> 8), byte(n)}
	case n <= 0xFFFFFF:
		return []byte{0x83, byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return []byte{0x84, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// Encode returns tag || length || value with a minimal length encoding.
func Encode(tag uint32, value []byte) []byte {
	out := make([]byte, 0, 4+5+len(value))
	out = append(out, TagBytes(tag)...)
	out = append(out, LengthBytes(len(value))...)
	return append(out, value...)
}

// EncodeConstructed returns a constructed object whose value is the
// concatenation of the given encoded children.
func EncodeConstructed(tag uint32, children ...[]byte) []byte {
	n := 0
	for _, c := range children {
		n += len(c)
	}
	v := make([]byte, 0, n)
	for _, c := range children {
		v = append(v, c...)
	}
	return Encode(tag, v)
}

// Bytes returns the encoding of t (tag, minimal length, value). It is not
// necessarily Raw: a parsed object with a non-minimal length re-encodes
// minimally.
func (t TLV) Bytes() []byte { return Encode(t.Tag, t.Value) }

// Constructed reports whether the tag's first byte has b6 set.
func (t TLV) Constructed() bool { return TagBytes(t.Tag)[0]&0x20 != 0 }

// Children parses the value of a constructed object. It is computed on each
// call, so a malformed value only matters to callers that look inside.
func (t TLV) Children() ([]TLV, error) {
	if !t.Constructed() {
		return nil, ErrNotConstructed
	}
	return Parse(t.Value)
}

// Find returns the first object with the tag in list (no recursion).
func Find(list []TLV, tag uint32) (TLV, bool) {
	for _, t := range list {
		if t.Tag == tag {
			return t, true
		}
	}
	return TLV{}, false
}

// FindAll returns every object with the tag in list (no recursion).
func FindAll(list []TLV, tag uint32) []TLV {
	var out []TLV
	for _, t := range list {
		if t.Tag == tag {
			out = append(out, t)
		}
	}
	return out
}

// FindPath follows a path of tags through nested constructed objects, e.g.
// FindPath(list, 0x6F, 0xA5, 0x9F65). It reports false when a step is
// missing or a constructed value does not parse.
func FindPath(list []TLV, path ...uint32) (TLV, bool) {
	var cur TLV
	for i, tag := range path {
		t, ok := Find(list, tag)
		if !ok {
			return TLV{}, false
		}
		cur = t
		if i < len(path)-1 {
			next, err := t.Children()
			if err != nil {
				return TLV{}, false
			}
			list = next
		}
	}
	return cur, len(path) > 0
}

// ReadLV reads one GP LV field (GPC 11.5.2, INSTALL data): a BER-style length
// (00-7F, 81 xx, 82 xx xx; a lone 80 counts as 128 as gp-card.md 2.3 allows)
// followed by that many bytes. It returns the value and the rest.
func ReadLV(b []byte) (value, rest []byte, err error) {
	l, n, err := readLength(b, 0, true)
	if err != nil {
		return nil, b, err
	}
	if l > len(b)-n {
		return nil, b, perr(ErrTruncated, 0, "LV length %d but %d bytes left", l, len(b)-n)
	}
	return b[n : n+l : n+l], b[n+l:], nil
}

// ReadLVs reads count consecutive LV fields and returns them with the rest.
func ReadLVs(b []byte, count int) ([][]byte, []byte, error) {
	out := make([][]byte, 0, count)
	for i := 0; i < count; i++ {
		v, rest, err := ReadLV(b)
		if err != nil {
			return out, b, fmt.Errorf("field %d: %w", i+1, err)
		}
		out = append(out, v)
		b = rest
	}
	return out, b, nil
}

// AppendLV appends len(value) (minimal BER length) and value to dst.
func AppendLV(dst, value []byte) []byte {
	dst = append(dst, LengthBytes(len(value))...)
	return append(dst, value...)
}
