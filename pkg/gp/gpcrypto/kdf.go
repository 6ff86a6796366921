package gpcrypto

import (
	"fmt"
)

// CounterLocation says where the counter goes in the PRF input of the
// SP 800-108 counter-mode KDF (the CAVP CTRLOCATION values).
type CounterLocation int

const (
	// CounterBeforeFixed: PRF input = i || fixed input data.
	CounterBeforeFixed CounterLocation = iota
	// CounterAfterFixed: PRF input = fixed input data || i.
	CounterAfterFixed
	// CounterMiddleFixed: PRF input = data before || i || data after. SCP03
	// uses this shape with an 8-bit counter (Amd D 4.1.5).
	CounterMiddleFixed
)

// String returns the CAVP spelling of the location.
func (l CounterLocation) String() string {
	switch l {
	case CounterBeforeFixed:
		return "BEFORE_FIXED"
	case CounterAfterFixed:
		return "AFTER_FIXED"
	case CounterMiddleFixed:
		return "MIDDLE_FIXED"
	}
	return fmt.Sprintf("CounterLocation(%d)", int(l))
}

// KDFParams configures CounterKDF.
type KDFParams struct {
	// Location of the counter in each PRF input.
	Location CounterLocation
	// CounterBits is r, the counter length: 8, 16, 24 or 32.
	CounterBits int
	// Before is the data placed before the counter (the whole fixed input for
	// CounterAfterFixed; unused for CounterBeforeFixed unless After is empty).
	Before []byte
	// After is the data placed after the counter (the whole fixed input for
	// CounterBeforeFixed).
	After []byte
}

// CounterKDF derives outBits bits (a multiple of 8) from key with the NIST
// SP 800-108 KDF in counter mode and AES-CMAC as PRF. The counter starts at 1
// and is encoded big-endian in CounterBits/8 bytes; the PRF outputs are
// concatenated and cut to outBits. With CounterBeforeFixed the fixed input is
// Before||After placed after the counter; with CounterAfterFixed it is
// Before||After placed before the counter.
func CounterKDF(key []byte, outBits int, p KDFParams) ([]byte, error) {
	b, err := NewAES(key)
	if err != nil {
		return nil, err
	}
	switch p.CounterBits {
	case 8, 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: counter length %d bits", ErrDataLength, p.CounterBits)
	}
	if outBits <= 0 || outBits%8 != 0 {
		return nil, fmt.Errorf("%w: output length %d bits", ErrDataLength, outBits)
	}
	outLen := outBits / 8
	blocks := (outLen + 15) / 16
	rb := p.CounterBits / 8
	if rb < 4 && uint64(blocks) >= uint64(1)<<(8*rb) {
		return nil, fmt.Errorf("%w: %d bits need more than a %d-bit counter can count", ErrDataLength, outBits, p.CounterBits)
	}
	var before, after []byte
	switch p.Location {
	case CounterBeforeFixed:
		after = concat(p.Before, p.After)
	case CounterAfterFixed:
		before = concat(p.Before, p.After)
	case CounterMiddleFixed:
		before, after = p.Before, p.After
	default:
		return nil, fmt.Errorf("%w: unknown counter location %d", ErrDataLength, int(p.Location))
	}
	in := make([]byte, len(before)+rb+len(after))
	copy(in, before)
	copy(in[len(before)+rb:], after)
	out := make([]byte, 0, blocks*16)
	for i := 1; i <= blocks; i++ {
		for j := 0; j < rb; j++ {
			in[len(before)+j] = byte(uint32(i) >> (8 * (rb - 1 - j)))
		}
		out = append(out, CMACBlock(b, in)...)
	}
	return out[:outLen], nil
}

func concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// SCP03 derivation constants (Amd D Table 4-1).
const (
	DeriveCardCryptogram byte = 0x00
	DeriveHostCryptogram byte = 0x01
	DeriveCardChallenge  byte = 0x02
	DeriveSENC           byte = 0x04
	DeriveSMAC           byte = 0x06
	DeriveSRMAC          byte = 0x07
)

// SCP03KDF is the Amd D 4.1.5 data derivation: the counter-mode KDF with an
// 8-bit counter between a 12-byte label (11 zero bytes and the derivation
// constant), a zero separator and the 2-byte output length L, and the context
// after it. lBits is the output length in bits (64 or 128 for cryptograms and
// challenges, the key length for session keys).
func SCP03KDF(key []byte, constant byte, lBits int, context []byte) ([]byte, error) {
	if lBits <= 0 || lBits > 0xFFFF || lBits%8 != 0 {
		return nil, fmt.Errorf("%w: output length %d bits", ErrDataLength, lBits)
	}
	before := make([]byte, 15)
	before[11] = constant
	before[13] = byte(lBits >> 8)
	before[14] = byte(lBits)
	return CounterKDF(key, lBits, KDFParams{Location: CounterMiddleFixed, CounterBits: 8, Before: before, After: context})
}
