package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/gp/scp03"
	"github.com/tsmhub/tsmhub/pkg/spclient"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

const scriptFormatHelp = `Script files: one command per line; blank lines and # comments are ignored.
A line is a raw C-APDU in hex (spaces allowed), sent as is, or a directive:

  select <aid>                    SELECT by AID (00A40400 Lc AID 00)
  initialize-update [kvn]         INITIALIZE UPDATE (default --kvn) with a random
                                  host challenge: starts the SCP03 session
  external-authenticate [level]   EXTERNAL AUTHENTICATE (default --level; 00 01 03
                                  11 13 33)
  secure <hex APDU>               the plain APDU wrapped in the session (C-MAC, and
                                  C-DEC of the data when the level has it)
  get-status <p1>                 secured GET STATUS P1 (80 40 20 10), P2=02, 4F00
  store-data <hex data>           secured STORE DATA, last block (P1=80, P2=00)
  put-key <old-kvn> <new-kvn> <enc:mac:dek>
                                  secured PUT KEY: replace key set old-kvn (00 adds
                                  one) by new-kvn with three AES keys, encrypted
                                  under the session's Key-DEK, with KCVs

SCP03 needs the card's INITIALIZE UPDATE response before it can build EXTERNAL
AUTHENTICATE, so directives are resolved script by script, after the previous
script's responses came back: put initialize-update in one script and
external-authenticate and the secured commands in the next. The secure channel
lives in tsmctl's memory for the whole conversation; the card keeps its side
between the scripts. All scripts are checked before the conversation begins.

Each command is printed with its response, its status word and, for secured
commands, the verified plain data ("R-MAC ok"). The conversation always ends;
with outcome failure when a script failed. Exit status 1 on any failed status
or response that does not verify.

Keys: --sd-master-key derives the SD's keys with kdf3 over the KDD the card
returns (pre-issued SP SDs); --keys gives the static keys (e.g. after a key
rotation); --wrapped-keys with --ktk takes the temporary keys exactly as
pre-personalize returned them (temporaryKeys.wrapped) and unwraps them in
memory. --keys-file reads the file of tsmctl pre-personalize --keys-out: its
keys (wrapped: give --ktk, --ktk-file or $TSM_KTK; or in clear with
--plain-keys), and, unless given, --se, --target-aid (the SP's SD) and --kvn
(the temporary key version). $TSM_SD_MASTER_KEY, $TSM_SD_KEYS and $TSM_KTK are
read when the flags are not given, which keeps keys out of the process list.
Keys are never printed.

Example (the README walkthrough):
  # 1-init.txt                    # 2-rotate.txt
  select A000000555AA01           external-authenticate 33
  initialize-update 30            get-status 40
                                  put-key 30 31 <enc>:<mac>:<dek>
  tsmctl --sp bank-a converse --se 0102030405060708 --target-aid A000000555AA01 \
      --operation key-rotation --sd-master-key $KEY --script 1-init.txt --script 2-rotate.txt

After pre-personalize (SD created with temporary keys, KVN 30):
  tsmctl --sp bank1 pre-personalize --se 0100000000000005 --service 1/1 --ktk-file bank1.ktk --keys-out se5.keys.json
  tsmctl --sp bank1 converse --keys-file se5.keys.json --ktk-file bank1.ktk --operation key-rotation \
      --script 1-init.txt --script 2-rotate.txt`

var converseCommand = &command{
	name:    "converse",
	summary: "begin a conversation, send one script per --script file, end it (end-to-end SCP03)",
	usage: "--se <seId> --target-aid <aid> --operation key-rotation|personalization|post-personalization|other\n" +
		"       [--service-id number:version]\n" +
		"       [--sd-master-key hex | --keys enc:mac:dek | --wrapped-keys hex --ktk hex | --keys-file file [--ktk hex | --ktk-file file]]\n" +
		"       [--kvn 30] [--level 03]" +
		" [--continue-on-error] --script file1 [--script file2 ...] [--outcome success]",
	help: scriptFormatHelp,
	flags: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) int {
		o := &converseOptions{}
		fs.StringVar(&o.seID, "se", "", "SE id (CIN in hex) (required)")
		fs.StringVar(&o.targetAID, "target-aid", "", "AID of the SD or instance the conversation addresses (required)")
		fs.StringVar(&o.operation, "operation", "", "key-rotation, personalization, post-personalization or other (required)")
		fs.StringVar(&o.serviceID, "service-id", "", "service of the catalog as number:version")
		fs.StringVar(&o.masterKey, "sd-master-key", "", "SD master key in hex ($TSM_SD_MASTER_KEY)")
		fs.StringVar(&o.keys, "keys", "", "static SD keys enc:mac:dek in hex ($TSM_SD_KEYS)")
		fs.StringVar(&o.wrappedKeys, "wrapped-keys", "", "temporary SD keys as pre-personalize returned them (temporaryKeys.wrapped, hex); needs --ktk")
		fs.StringVar(&o.ktk, "ktk", "", "the SP's key-transport key in hex, to unwrap --wrapped-keys or --keys-file ($TSM_KTK)")
		fs.StringVar(&o.ktkFile, "ktk-file", "", "file holding the SP's key-transport key in hex (instead of --ktk)")
		fs.StringVar(&o.keysFile, "keys-file", "", "keys file of `tsmctl pre-personalize --keys-out`: keys, SE, SD and key version")
		fs.StringVar(&o.kvn, "kvn", "30", "key version for initialize-update, hex (00 = default key set)")
		fs.StringVar(&o.level, "level", "03", "security level for external-authenticate, hex")
		fs.BoolVar(&o.continueOnError, "continue-on-error", false, "let the SE run the rest of a script after a failing command")
		fs.Var(&o.scripts, "script", "script file; repeat for several scripts, sent in order (required)")
		fs.StringVar(&o.outcome, "outcome", contract.OutcomeSuccess, "outcome to end with when every script succeeded (success or failure)")
		return func(ctx context.Context, e *env, args []string) int {
			if len(args) > 0 {
				e.errorf("converse takes no arguments (scripts go in --script)")
				return exitUsage
			}
			fs.Visit(func(f *flag.Flag) { o.set = append(o.set, f.Name) })
			return converse(ctx, e, o)
		}
	},
}

// converseOptions are the flags of converse.
type converseOptions struct {
	seID, targetAID, operation, serviceID string
	masterKey, keys, kvn, level           string
	wrappedKeys, ktk, ktkFile, keysFile   string
	continueOnError                       bool
	scripts                               stringList
	outcome                               string
	// set lists the flags given on the command line.
	set []string
	// kf is the loaded --keys-file.
	kf *keysFile
}

// applyKeysFile loads --keys-file and takes --se, --target-aid and --kvn
// from it when they were not given; a given --se must match the file's.
func (o *converseOptions) applyKeysFile() error {
	if o.keysFile == "" {
		return nil
	}
	kf, err := loadKeysFile(o.keysFile)
	if err != nil {
		return err
	}
	o.kf = kf
	switch {
	case o.seID == "":
		o.seID = kf.SEID
	case kf.SEID != "" && !strings.EqualFold(o.seID, kf.SEID):
		return fmt.Errorf("--se %s, but --keys-file %s holds the keys of an SD on SE %s", o.seID, o.keysFile, kf.SEID)
	}
	if o.targetAID == "" {
		o.targetAID = kf.SecurityDomainAID
	}
	if !slices.Contains(o.set, "kvn") {
		o.kvn = fmt.Sprintf("%02X", kf.KeyVersion)
	}
	return nil
}

// prepared is a checked converse invocation.
type prepared struct {
	begin   contract.BeginConversationRequest
	scripts []*script
	session *session
}

// prepare checks flags and scripts before anything is sent.
func (o *converseOptions) prepare() (*prepared, error) {
	var problems []string
	if err := o.applyKeysFile(); err != nil {
		problems = append(problems, err.Error())
	}
	if !topology.ValidSEID(strings.ToUpper(o.seID)) {
		problems = append(problems, "--se: give the SE id, the CIN in hex")
	}
	aid, err := apdu.DecodeHex(o.targetAID)
	if err != nil || len(aid) < 5 || len(aid) > 16 {
		problems = append(problems, "--target-aid: give an AID of 5 to 16 bytes in hex")
	}
	switch o.operation {
	case contract.OperationKeyRotation, contract.OperationPersonalization, contract.OperationPostPersonalization, contract.OperationOther:
	default:
		problems = append(problems, "--operation: key-rotation, personalization, post-personalization or other")
	}
	if o.outcome != contract.OutcomeSuccess && o.outcome != contract.OutcomeFailure {
		problems = append(problems, "--outcome: success or failure")
	}
	p := &prepared{begin: contract.BeginConversationRequest{SEID: strings.ToUpper(o.seID), TargetAID: upper(aid),
		RequestedOperation: o.operation}}
	if o.serviceID != "" {
		num, ver, ok := strings.Cut(o.serviceID, ":")
		if !ok || num == "" || ver == "" {
			problems = append(problems, "--service-id: number:version, e.g. 1:1")
		}
		p.begin.ServiceID = &contract.ServiceID{Number: num, Version: ver}
	}
	s := &session{}
	if s.kvn, err = byteArg("--kvn", o.kvn); err != nil {
		problems = append(problems, err.Error())
	}
	if s.level, err = byteArg("--level", o.level); err != nil || !scp03.ValidLevel(s.level) {
		problems = append(problems, "--level: 00, 01, 03, 11, 13 or 33")
	}
	cfg, haveKeys, err := o.channelConfig()
	if err != nil {
		problems = append(problems, err.Error())
	} else if haveKeys {
		if s.channel, err = spclient.NewSecureChannel(cfg); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(o.scripts) == 0 {
		problems = append(problems, "--script: give at least one script file")
	}
	for _, path := range o.scripts {
		sc, err := loadScript(path)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		p.scripts = append(p.scripts, sc)
	}
	if len(p.scripts) == len(o.scripts) {
		if err := checkOrder(p.scripts, haveKeys); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	p.session = s
	return p, nil
}

// channelConfig reads the key flags (or their environment variables).
func (o *converseOptions) channelConfig() (spclient.SecureChannelConfig, bool, error) {
	master, keys := o.masterKey, o.keys
	if master == "" && keys == "" && o.wrappedKeys == "" && o.keysFile == "" {
		master, keys = os.Getenv("TSM_SD_MASTER_KEY"), os.Getenv("TSM_SD_KEYS")
	}
	given := 0
	for _, v := range []string{master, keys, o.wrappedKeys, o.keysFile} {
		if v != "" {
			given++
		}
	}
	ktk := o.ktk
	if o.ktkFile != "" {
		if ktk != "" {
			return spclient.SecureChannelConfig{}, false, fmt.Errorf("give --ktk or --ktk-file, not both")
		}
		b, err := os.ReadFile(o.ktkFile)
		if err != nil {
			return spclient.SecureChannelConfig{}, false, fmt.Errorf("--ktk-file: %v", err)
		}
		ktk = strings.TrimSpace(string(b))
	}
	switch {
	case given > 1:
		return spclient.SecureChannelConfig{}, false, fmt.Errorf("give one of --sd-master-key, --keys, --wrapped-keys and --keys-file")
	case o.keysFile != "" && o.kf == nil:
		// The keys file did not load: prepare reported why.
		return spclient.SecureChannelConfig{}, false, nil
	case o.kf != nil && o.kf.Keys != "":
		k, err := parseKeyTriple(o.kf.Keys)
		if err != nil {
			return spclient.SecureChannelConfig{}, false, fmt.Errorf("--keys-file %s: %v", o.keysFile, err)
		}
		return spclient.SecureChannelConfig{Keys: &k}, true, nil
	case o.kf != nil && ktk == "" && os.Getenv("TSM_KTK") == "":
		return spclient.SecureChannelConfig{}, false, fmt.Errorf("--keys-file %s holds wrapped keys: give the SP's "+
			"key-transport key with --ktk, --ktk-file or $TSM_KTK", o.keysFile)
	case o.kf != nil:
		k, err := unwrapTemporaryKeys(o.kf.Wrapped, ktk)
		if err != nil {
			return spclient.SecureChannelConfig{}, false, fmt.Errorf("--keys-file %s: %v", o.keysFile,
				strings.ReplaceAll(err.Error(), "--wrapped-keys", "the wrapped keys"))
		}
		return spclient.SecureChannelConfig{Keys: &k}, true, nil
	case o.wrappedKeys != "":
		k, err := unwrapTemporaryKeys(o.wrappedKeys, ktk)
		if err != nil {
			return spclient.SecureChannelConfig{}, false, err
		}
		return spclient.SecureChannelConfig{Keys: &k}, true, nil
	case master != "":
		b, err := apdu.DecodeHex(master)
		if err != nil {
			return spclient.SecureChannelConfig{}, false, fmt.Errorf("--sd-master-key is not hex")
		}
		return spclient.SecureChannelConfig{MasterKey: b}, true, nil
	case keys != "":
		k, err := parseKeyTriple(keys)
		if err != nil {
			return spclient.SecureChannelConfig{}, false, fmt.Errorf("--keys: %v", err)
		}
		return spclient.SecureChannelConfig{Keys: &k}, true, nil
	}
	return spclient.SecureChannelConfig{}, false, nil
}

// unwrapTemporaryKeys unwraps the temporary keys of pre-personalize: RFC
// 3394 AES key wrap under the SP's key-transport key of ENC || MAC || DEK.
// The keys stay in memory; errors never show them.
func unwrapTemporaryKeys(wrappedHex, ktkHex string) (scp03.StaticKeys, error) {
	if ktkHex == "" {
		ktkHex = os.Getenv("TSM_KTK")
	}
	if ktkHex == "" {
		return scp03.StaticKeys{}, fmt.Errorf("--wrapped-keys needs --ktk (or $TSM_KTK), the SP's key-transport key")
	}
	ktk, err := apdu.DecodeHex(ktkHex)
	if err != nil {
		return scp03.StaticKeys{}, fmt.Errorf("--ktk is not hex")
	}
	wrapped, err := apdu.DecodeHex(wrappedHex)
	if err != nil {
		return scp03.StaticKeys{}, fmt.Errorf("--wrapped-keys is not hex")
	}
	plain, err := gpcrypto.AESKeyUnwrap(ktk, wrapped)
	if err != nil {
		return scp03.StaticKeys{}, fmt.Errorf("--wrapped-keys do not unwrap under --ktk (wrong key-transport key?)")
	}
	n := len(plain) / 3
	if len(plain)%3 != 0 || (n != 16 && n != 24 && n != 32) {
		return scp03.StaticKeys{}, fmt.Errorf("--wrapped-keys hold %d bytes, not three AES keys", len(plain))
	}
	return scp03.StaticKeys{ENC: plain[:n], MAC: plain[n : 2*n], DEK: plain[2*n:]}, nil
}

func converse(ctx context.Context, e *env, o *converseOptions) int {
	p, err := o.prepare()
	if err != nil {
		e.errorf("converse:\n%v", err)
		return exitUsage
	}
	c, done, err := e.client()
	if err != nil {
		e.errorf("%v", err)
		return exitFailed
	}
	defer done()

	var begin contract.BeginConversationResponse
	r, err := c.Call(ctx, topology.OpBeginConversation, p.begin, &begin)
	if err != nil {
		e.errorf("begin-conversation: %v", err)
		return exitFailed
	}
	e.printReply(r)
	if err := r.Err(); err != nil {
		e.errorf("begin-conversation: %s", failureText(err))
		return exitFailed
	}
	e.human("conversation %s on SE %s: OTA %s, up to %d scripts of %d APDUs / %d bytes, expires %s\n",
		begin.ConversationID, p.begin.SEID, begin.OTACarrier, begin.MaxScripts, begin.MaxAPDUsPerScript,
		begin.MaxScriptBytes, formatTime(begin.ExpiresAt))

	failed := false
	for i, sc := range p.scripts {
		if ctx.Err() != nil {
			failed = true
			break
		}
		ok := e.runScript(ctx, c, p.session, begin.ConversationID, sc, i+1, len(p.scripts), o.continueOnError)
		if !ok {
			failed = true
			if !o.continueOnError {
				break
			}
		}
	}

	outcome := o.outcome
	if failed {
		outcome = contract.OutcomeFailure
	}
	// The conversation is ended even after Ctrl-C, so the SE is free again.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.g.timeout)
	defer cancel()
	r, err = c.Call(endCtx, topology.OpEndConversation, contract.EndConversationRequest{
		ConversationID: begin.ConversationID, Outcome: outcome}, nil)
	if err != nil {
		e.errorf("end-conversation: %v", err)
		return exitFailed
	}
	e.printReply(r)
	if err := r.Err(); err != nil {
		e.errorf("end-conversation: %s", failureText(err))
		return exitFailed
	}
	e.human("conversation %s ended: %s\n", begin.ConversationID, outcome)
	if failed {
		return exitFailed
	}
	return exitOK
}

// runScript resolves, sends and prints one script; false when anything in
// it failed.
func (e *env) runScript(ctx context.Context, c *spclient.Client, s *session, conversationID string, sc *script, n, total int, continueOnError bool) bool {
	plan, err := s.resolve(sc)
	if err != nil {
		e.errorf("script %d/%d: %v", n, total, err)
		return false
	}
	e.human("script %d/%d %s: %d commands\n", n, total, sc.Name, len(plan))
	req := contract.SendScriptRequest{ConversationID: conversationID, Securing: contract.SecuringEndToEnd, ContinueOnError: continueOnError}
	for _, p := range plan {
		req.Commands = append(req.Commands, upper(p.Command))
	}
	var resp contract.SendScriptResponse
	r, err := c.Call(ctx, topology.OpSendScript, req, &resp)
	if err != nil {
		e.errorf("send-script %s: %v", sc.Name, err)
		return false
	}
	e.printReply(r)
	ok := r.OK()
	failures := map[int]contract.ScriptFailure{}
	for _, f := range resp.Failed {
		failures[f.Index] = f
		ok = false
	}
	for i, p := range plan {
		e.human("  [%d] %s:%d %s\n      > %s\n", i+1, filepath.Base(p.Step.File), p.Step.Line, p.Step.Display, upper(p.Command))
		if i >= len(resp.Responses) {
			if f, isFailed := failures[i]; isFailed {
				e.human("      FAILED: %s\n", failureLine(f))
			} else {
				e.human("      not executed\n")
			}
			continue
		}
		rapdu, err := apdu.DecodeHex(resp.Responses[i])
		if err != nil {
			e.human("      < %s: not hex\n", resp.Responses[i])
			ok = false
			continue
		}
		rr, err := apdu.ParseResponse(rapdu)
		if err != nil {
			e.human("      < %s: %v\n", upper(rapdu), err)
			ok = false
			continue
		}
		e.human("      < %s  SW %04X (%s)\n", upper(rapdu), rr.SW, apdu.StatusText(rr.SW))
		if f, isFailed := failures[i]; isFailed {
			e.human("      FAILED: %s\n", failureLine(f))
			continue
		}
		notes, err := s.check(p, rapdu)
		for _, note := range notes {
			e.human("      %s\n", note)
		}
		if err != nil {
			e.human("      FAILED: %v\n", err)
			e.errorf("%s: %v", p.Step.where(), err)
			ok = false
		}
	}
	if !r.OK() {
		e.errorf("send-script %s: %s", sc.Name, failureText(r.Err()))
	}
	return ok
}

func failureLine(f contract.ScriptFailure) string {
	if f.SW != "" {
		return fmt.Sprintf("%s (SW %s)", f.Reason, f.SW)
	}
	return f.Reason
}

// human prints the human-readable lines (suppressed by --json).
func (e *env) human(format string, args ...any) {
	if !e.g.json {
		fmt.Fprintf(e.stdout, format, args...)
	}
}

// printReply prints a raw response body with --json, one JSON object per line.
func (e *env) printReply(r *spclient.Reply) {
	if e.g.json {
		e.stdout.Write(append(compactJSON(r.Body), '\n'))
	}
}

func formatTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}
