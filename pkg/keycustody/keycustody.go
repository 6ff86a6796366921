// Package keycustody holds what the registry and the script router share
// about keys: the demo defaults of the issuer master key and of the
// key-exchange key, and the wrapping of an SP's key-transport key between the
// two services (docs/content-management.md, "Key custody").
//
// In a real deployment both keys live in an HSM shared by the two services;
// here they come from configuration (REGISTRY_KEY_EXCHANGE_KEY,
// SCRIPTROUTER_KEY_EXCHANGE_KEY, SCRIPTROUTER_ISSUER_MASTER_KEY) and the
// demo defaults below apply only when nothing is configured.
package keycustody

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
)

// Demo key material. Public values, for the embedded demo run only: every
// service that falls back to one of them logs a warning.
var (
	// DemoIssuerMasterKey is the issuer master key the card factory of the
	// se-simulator diversifies ISD and central SD keys from by default
	// (40..4F, the GlobalPlatform test key).
	DemoIssuerMasterKey = mustHex("404142434445464748494A4B4C4D4E4F")
	// DemoKeyExchangeKey wraps SP key-transport keys on their way from the
	// registry to the script router (AES-256).
	DemoKeyExchangeKey = mustHex("6B65792065786368616E6765206B657920666F72207473686875622064656D6F")
)

// ErrBadKey is returned for key material of the wrong form.
var ErrBadKey = errors.New("bad key")

// ParseAESKey decodes a hex AES key of 16, 24 or 32 bytes. The error never
// contains the value.
func ParseAESKey(name, value string) ([]byte, error) {
	key, err := hex.DecodeString(strings.TrimSpace(value))
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not hex", ErrBadKey, name)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("%w: %s must be an AES key of 16, 24 or 32 bytes, got %d", ErrBadKey, name, len(key))
}

// WrapTransportKey wraps an SP key-transport key under the key-exchange key
// (RFC 3394) and returns it as uppercase hex, the form SPRecord carries.
func WrapTransportKey(exchangeKey, transportKey []byte) (string, error) {
	w, err := gpcrypto.AESKeyWrap(exchangeKey, transportKey)
	if err != nil {
		return "", fmt.Errorf("wrap key-transport key: %w", err)
	}
	return strings.ToUpper(hex.EncodeToString(w)), nil
}

// UnwrapTransportKey reverses WrapTransportKey.
func UnwrapTransportKey(exchangeKey []byte, wrapped string) ([]byte, error) {
	w, err := hex.DecodeString(wrapped)
	if err != nil {
		return nil, fmt.Errorf("%w: wrapped key-transport key is not hex", ErrBadKey)
	}
	k, err := gpcrypto.AESKeyUnwrap(exchangeKey, w)
	if err != nil {
		return nil, fmt.Errorf("%w: the key-transport key does not unwrap under the configured key-exchange key", ErrBadKey)
	}
	return k, nil
}

// WrapTemporaryKeys wraps ENC || MAC || DEK under an SP's key-transport key:
// the temporaryKeys.wrapped of a pre-personalize response (uppercase hex).
func WrapTemporaryKeys(transportKey, enc, mac, dek []byte) (string, error) {
	plain := make([]byte, 0, len(enc)+len(mac)+len(dek))
	plain = append(append(append(plain, enc...), mac...), dek...)
	w, err := gpcrypto.AESKeyWrap(transportKey, plain)
	clear(plain)
	if err != nil {
		return "", fmt.Errorf("wrap temporary keys: %w", err)
	}
	return strings.ToUpper(hex.EncodeToString(w)), nil
}

// UnwrapTemporaryKeys is the SP side of WrapTemporaryKeys: it returns the
// three keys (each a third of the unwrapped data).
func UnwrapTemporaryKeys(transportKey []byte, wrapped string) (enc, mac, dek []byte, err error) {
	w, err := hex.DecodeString(strings.TrimSpace(wrapped))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: wrapped temporary keys are not hex", ErrBadKey)
	}
	plain, err := gpcrypto.AESKeyUnwrap(transportKey, w)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: the temporary keys do not unwrap under this key-transport key", ErrBadKey)
	}
	if len(plain)%3 != 0 {
		return nil, nil, nil, fmt.Errorf("%w: unwrapped %d bytes, not three keys", ErrBadKey, len(plain))
	}
	n := len(plain) / 3
	return plain[:n], plain[n : 2*n], plain[2*n:], nil
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
