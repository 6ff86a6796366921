package apdu

import (
	"errors"
	"fmt"
)

// Status words used by GlobalPlatform cards (GPC v2.3.1 chapter 11 and ISO/IEC
// 7816-4 5.6; project notes gp-card.md 2.9).
const (
	// SWOK: normal processing.
	SWOK uint16 = 0x9000
	// SWChannelAlreadyClosed: MANAGE CHANNEL close on a channel that is not open
	// (warning, state of non-volatile memory unchanged).
	SWChannelAlreadyClosed uint16 = 0x6200
	// SWCardLocked: SELECT answered while the card is locked and the Final
	// Application is selected (GPC 11.9).
	SWCardLocked uint16 = 0x6283
	// SWAuthenticationFailed: EXTERNAL AUTHENTICATE host cryptogram
	// verification failed.
	SWAuthenticationFailed uint16 = 0x6300
	// SWMoreData: GET STATUS has more entries; ask again with P2 "next".
	SWMoreData uint16 = 0x6310
	// SWNoSpecificDiagnosis: execution error without a more precise cause.
	SWNoSpecificDiagnosis uint16 = 0x6400
	// SWMemoryFailure: non-volatile memory write failed.
	SWMemoryFailure uint16 = 0x6581
	// SWWrongLength: Lc or Le inconsistent with the command.
	SWWrongLength uint16 = 0x6700
	// SWLogicalChannelNotSupported: logical channel not supported or not open.
	SWLogicalChannelNotSupported uint16 = 0x6881
	// SWSecureMessagingNotSupported: secure messaging not supported.
	SWSecureMessagingNotSupported uint16 = 0x6882
	// SWSecurityNotSatisfied: security status not satisfied (bad or missing
	// MAC, command below the session's security level, invalid KCV).
	SWSecurityNotSatisfied uint16 = 0x6982
	// SWConditionsNotSatisfied: conditions of use not satisfied (wrong
	// life-cycle state, wrong command sequence, broken chaining).
	SWConditionsNotSatisfied uint16 = 0x6985
	// SWIncorrectData: incorrect values in the data field.
	SWIncorrectData uint16 = 0x6A80
	// SWFunctionNotSupported: function not supported (also SELECT while the
	// card is locked).
	SWFunctionNotSupported uint16 = 0x6A81
	// SWApplicationNotFound: SELECT of an unknown AID.
	SWApplicationNotFound uint16 = 0x6A82
	// SWNotEnoughMemory: not enough memory space.
	SWNotEnoughMemory uint16 = 0x6A84
	// SWIncorrectP1P2: incorrect P1 or P2 (also: chaining not supported).
	SWIncorrectP1P2 uint16 = 0x6A86
	// SWReferencedDataNotFound: referenced data (key, key set, object) not
	// found.
	SWReferencedDataNotFound uint16 = 0x6A88
	// SWINSNotSupported: instruction code not supported or invalid.
	SWINSNotSupported uint16 = 0x6D00
	// SWCLANotSupported: class not supported.
	SWCLANotSupported uint16 = 0x6E00
	// SWAlgorithmNotSupported is deprecated in GP 2.3 (use SWIncorrectData);
	// kept to decode responses of older cards.
	SWAlgorithmNotSupported uint16 = 0x9484
	// SWInvalidKeyCheckValue is deprecated in GP 2.3 (use
	// SWSecurityNotSatisfied); kept to decode responses of older cards.
	SWInvalidKeyCheckValue uint16 = 0x9485
)

var swText = map[uint16]string{
	SWOK:                          "success",
	SWChannelAlreadyClosed:        "logical channel already closed",
	SWCardLocked:                  "card locked",
	SWAuthenticationFailed:        "authentication of host cryptogram failed",
	SWMoreData:                    "more data available",
	SWNoSpecificDiagnosis:         "no specific diagnosis",
	SWMemoryFailure:               "memory failure",
	SWWrongLength:                 "wrong length",
	SWLogicalChannelNotSupported:  "logical channel not supported or not open",
	SWSecureMessagingNotSupported: "secure messaging not supported",
	SWSecurityNotSatisfied:        "security status not satisfied",
	SWConditionsNotSatisfied:      "conditions of use not satisfied",
	SWIncorrectData:               "incorrect values in command data",
	SWFunctionNotSupported:        "function not supported",
	SWApplicationNotFound:         "application not found",
	SWNotEnoughMemory:             "not enough memory space",
	SWIncorrectP1P2:               "incorrect parameters P1 P2",
	SWReferencedDataNotFound:      "referenced data not found",
	SWINSNotSupported:             "invalid instruction",
	SWCLANotSupported:             "invalid class",
	SWAlgorithmNotSupported:       "algorithm not supported (deprecated)",
	SWInvalidKeyCheckValue:        "invalid key check value (deprecated)",
}

// StatusText returns a short English description of a status word. Unknown
// values get a generic text based on SW1 (ISO 7816-4 5.6).
func StatusText(sw uint16) string {
	if t, ok := swText[sw]; ok {
		return t
	}
	switch sw1 := byte(sw >> 8); {
	case sw1 == 0x61:
		return fmt.Sprintf("%d response bytes still available", byte(sw))
	case sw1 == 0x6C:
		return fmt.Sprintf("wrong Le; exact length is %d", byte(sw))
	case sw1 == 0x62 || sw1 == 0x63:
		return "warning"
	case sw1 >= 0x64 && sw1 <= 0x66:
		return "execution error"
	case sw1 >= 0x67 && sw1 <= 0x6F:
		return "checking error"
	}
	return "unknown status"
}

// IsSuccessOrWarning reports whether sw is 9000 or a warning (62xx, 63xx).
// Secure channels protect only such responses: on any other status word the
// card sends neither R-MAC nor encrypted data (Amd D 6.2.5).
func IsSuccessOrWarning(sw uint16) bool {
	sw1 := byte(sw >> 8)
	return sw == SWOK || sw1 == 0x62 || sw1 == 0x63
}

// StatusError is an error that carries the status word a card returns for
// it. The secure-channel packages return it on the card side so that the
// simulator can answer with SW without a translation table; Err (matched by
// errors.Is) says why.
type StatusError struct {
	SW  uint16
	Err error
}

// Error implements error.
func (e *StatusError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("status %04X (%s)", e.SW, StatusText(e.SW))
	}
	return fmt.Sprintf("%v (status %04X)", e.Err, e.SW)
}

// Unwrap returns the cause.
func (e *StatusError) Unwrap() error { return e.Err }

// StatusWord returns the status word.
func (e *StatusError) StatusWord() uint16 { return e.SW }

// NewStatusError returns a *StatusError for sw wrapping err.
func NewStatusError(sw uint16, err error) *StatusError { return &StatusError{SW: sw, Err: err} }

// SWOf returns the status word carried by err (any error in its chain with a
// StatusWord() uint16 method), or def when there is none. SWOf(nil, def) is
// SWOK.
func SWOf(err error, def uint16) uint16 {
	if err == nil {
		return SWOK
	}
	var s interface{ StatusWord() uint16 }
	if errors.As(err, &s) {
		return s.StatusWord()
	}
	return def
}
