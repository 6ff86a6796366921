package testvectors

import "testing"

// Keys is a static key set as the session files spell it.
type Keys struct {
	ENC string `json:"enc"`
	MAC string `json:"mac"`
	DEK string `json:"dek"`
}

// Exchange is a command / response pair.
type Exchange struct {
	Command       string `json:"command"`
	Response      string `json:"response"`
	SW            string `json:"sw"`
	MACChainAfter string `json:"mac_chain_after"`
}

// InitFields are the parsed INITIALIZE UPDATE response fields.
type InitFields struct {
	KDD             string `json:"kdd"`
	KVN             string `json:"kvn"`
	SCP             string `json:"scp"`
	I               string `json:"i"`
	CardChallenge   string `json:"card_challenge"`
	CardCryptogram  string `json:"card_cryptogram"`
	SequenceCounter string `json:"sequence_counter"`
}

// SessionCommand is one wrapped command of a session transcript.
type SessionCommand struct {
	Plain           string  `json:"plain"`
	Wrapped         string  `json:"wrapped"`
	EncCounter      int     `json:"enc_counter"`
	MACChainAfter   string  `json:"mac_chain_after"`
	ICVUsed         string  `json:"icv_used"`
	CMAC            string  `json:"c_mac"`
	SW              *string `json:"sw"`
	ResponseWrapped *string `json:"response_wrapped"`
	ResponsePlain   *string `json:"response_plain"`
}

// Session is one SCP02 or SCP03 transcript.
type Session struct {
	Name            string            `json:"name"`
	SCP             string            `json:"scp"`
	I               *string           `json:"i"`
	KeyBits         int               `json:"key_bits"`
	ICVEncryption   bool              `json:"icv_encryption"`
	StaticKeys      Keys              `json:"static_keys"`
	KeyVersion      string            `json:"key_version"`
	SecurityLevel   string            `json:"security_level"`
	HostChallenge   string            `json:"host_challenge"`
	InitUpdate      Exchange          `json:"initialize_update"`
	InitFields      InitFields        `json:"initialize_update_fields"`
	SessionKeys     map[string]string `json:"session_keys"`
	CardCryptogram  string            `json:"card_cryptogram"`
	HostCryptogram  string            `json:"host_cryptogram"`
	ExtAuth         Exchange          `json:"external_authenticate"`
	PseudoRandomAID string            `json:"pseudo_random_challenge_sd_aid"`
	Commands        []SessionCommand  `json:"commands"`
}

// SessionFile is scp02-sessions.json or scp03-sessions.json; component
// vectors differ per file and are left raw.
type SessionFile struct {
	Sessions []Session `json:"sessions"`
}

// Sessions loads the sessions of a session file and fails when there are
// none.
func Sessions(t testing.TB, name string) []Session {
	t.Helper()
	var f SessionFile
	JSON(t, name, &f)
	if len(f.Sessions) == 0 {
		t.Fatalf("%s holds no sessions", name)
	}
	return f.Sessions
}
