package apdu

// CLA byte coding (ISO/IEC 7816-4 5.4.1; GPC v2.3.1 Tables 11-11 and 11-12;
// project notes gp-card.md 2.1).
//
// First interindustry and GP proprietary classes (b7=0: 00-0F, 80-8F) carry
// logical channels 0-3 in b2b1 and secure messaging in b4b3; GlobalPlatform
// sets b3 (04) for its own secure messaging. Further interindustry classes
// (b7=1: 40-7F, C0-FF) carry channels 4-19 as 4 + b4..b1 and secure messaging
// in b6 (20).

// IsProprietary reports whether b8 is set (GlobalPlatform commands, 80-FF).
func IsProprietary(cla byte) bool { return cla&0x80 != 0 }

func isFurther(cla byte) bool { return cla&0x40 != 0 }

// ValidCLA reports whether cla is a class byte a GP card can receive:
// FF is reserved for PPS and 20-3F / A0-BF are reserved for future use.
func ValidCLA(cla byte) bool {
	if cla == 0xFF {
		return false
	}
	return cla&0x60 != 0x20
}

// LogicalChannel returns the logical channel number (0-19) coded in cla.
// It returns -1 for class bytes that code no channel (see ValidCLA).
func LogicalChannel(cla byte) int {
	if !ValidCLA(cla) {
		return -1
	}
	if isFurther(cla) {
		return 4 + int(cla&0x0F)
	}
	return int(cla & 0x03)
}

// IsSecureMessaging reports whether cla indicates secure messaging: b4 or b3
// for the first interindustry / GP classes, b6 for the further classes.
func IsSecureMessaging(cla byte) bool {
	if !ValidCLA(cla) {
		return false
	}
	if isFurther(cla) {
		return cla&0x20 != 0
	}
	return cla&0x0C != 0
}

// WithSecureMessaging returns cla with the GlobalPlatform secure messaging
// indication set (b3 for channels 0-3, b6 for channels 4-19), the CLA' a host
// sends once it adds a C-MAC.
func WithSecureMessaging(cla byte) byte {
	if isFurther(cla) {
		return cla | 0x20
	}
	return cla | 0x04
}

// WithoutSecureMessaging clears the secure messaging indication, giving the
// class byte of the unwrapped command.
func WithoutSecureMessaging(cla byte) byte {
	if isFurther(cla) {
		return cla &^ 0x20
	}
	return cla &^ 0x0C
}

// WithoutChannel clears the logical channel bits. The secure channel
// protocols compute the C-MAC over a class byte whose channel number is zero,
// so that a session can run on any channel (gp-card.md 3, C-MAC).
func WithoutChannel(cla byte) byte {
	if isFurther(cla) {
		return cla &^ 0x0F
	}
	return cla &^ 0x03
}

// WithChannel returns cla re-coded for logical channel ch (0-19), moving
// between the first and further interindustry codings as needed and keeping
// the proprietary bit and the secure messaging indication. It returns cla
// unchanged when ch is out of range.
func WithChannel(cla byte, ch int) byte {
	if ch < 0 || ch > 19 {
		return cla
	}
	prop := cla & 0x80
	sm := IsSecureMessaging(cla)
	if ch < 4 {
		out := prop | byte(ch)
		if sm {
			out |= 0x04
		}
		return out
	}
	out := prop | 0x40 | byte(ch-4)
	if sm {
		out |= 0x20
	}
	return out
}
