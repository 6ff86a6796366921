package domain

import (
	"fmt"
	"log/slog"
)

// SecretKey is key material (an AES key). Its formatting, logging and JSON
// forms never show the value, so a SecretKey that slips into a log line, an
// error or a debug dump stays harmless.
type SecretKey []byte

// String implements fmt.Stringer without revealing the value.
func (k SecretKey) String() string { return fmt.Sprintf("[secret key, %d bytes]", len(k)) }

// GoString implements fmt.GoStringer (%#v) without revealing the value.
func (k SecretKey) GoString() string { return k.String() }

// Format implements fmt.Formatter so that %x, %X and %v all print the redacted form.
func (k SecretKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue implements slog.LogValuer.
func (k SecretKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalJSON implements json.Marshaler with the redacted form.
func (k SecretKey) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }

// ValidAESKeyLength reports whether n bytes make an AES-128, -192 or -256 key.
func ValidAESKeyLength(n int) bool { return n == 16 || n == 24 || n == 32 }
