package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/gp/gpcrypto"
	"github.com/tsmhub/tsmhub/pkg/keycustody"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

// serviceTarget holds the flags that name one service of the catalog on one
// SE: what pre-personalize and the service operations send.
type serviceTarget struct {
	se, msi, service, spName, prn string
}

func (s *serviceTarget) register(fs *flag.FlagSet) {
	fs.StringVar(&s.se, "se", "", "SE id (CIN in hex) (required)")
	fs.StringVar(&s.msi, "msi", "", "MSI the SE must be reached through (optional)")
	fs.StringVar(&s.service, "service", "", "service of the catalog as number/version, e.g. 1/1 (required)")
	fs.StringVar(&s.spName, "qualifier-sp-name", "", "service qualifier: the SP name of the instance (optional)")
	fs.StringVar(&s.prn, "prn", "", "service qualifier: product reference number of the instance (optional)")
}

// catalogToken is a service number or version (schemas: ^[A-Za-z0-9_-]{1,32}$).
var catalogToken = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// parseServiceID reads number/version (number:version is accepted too, the
// form of converse --service-id).
func parseServiceID(s string) (contract.ServiceID, error) {
	num, ver, ok := strings.Cut(s, "/")
	if !ok {
		num, ver, ok = strings.Cut(s, ":")
	}
	if !ok || !catalogToken.MatchString(num) || !catalogToken.MatchString(ver) {
		return contract.ServiceID{}, fmt.Errorf("--service %q: give number/version, e.g. 1/1 (letters, digits, _ or -)", s)
	}
	return contract.ServiceID{Number: num, Version: ver}, nil
}

// request builds the ServiceRequest; the error lists every bad flag.
func (s *serviceTarget) request() (contract.ServiceRequest, error) {
	var problems []string
	req := contract.ServiceRequest{SEID: strings.ToUpper(s.se), MSI: s.msi}
	if !topology.ValidSEID(req.SEID) {
		problems = append(problems, "--se: give the SE id, the CIN in hex")
	}
	if s.service == "" {
		problems = append(problems, "--service: give the service as number/version, e.g. 1/1")
	} else if id, err := parseServiceID(s.service); err != nil {
		problems = append(problems, err.Error())
	} else {
		req.ServiceID = id
	}
	if s.spName != "" || s.prn != "" {
		req.ServiceQualifier = &contract.ServiceQualifier{SPName: s.spName, PRN: s.prn}
	}
	if len(problems) > 0 {
		return req, errors.New(strings.Join(problems, "\n"))
	}
	return req, nil
}

const prePersonalizeHelp = `Sends pre-personalize through the SP client and prints the response JSON (one
compact line with --json). On success the SE has the SP's security domain
(created with temporary keys when the SP had none there) and the service's
instance, in state installed.

The temporary keys come back only wrapped (RFC 3394) under the SP's
key-transport key (temporaryKeys.wrapped). With --ktk, --ktk-file or $TSM_KTK
tsmctl unwraps them in memory and prints their key version and key check
values (KCV: AES-ECB of 16 x 01, first 3 bytes), never the keys.

--keys-out FILE writes a keys file (mode 0600, replaced if it exists) that
tsmctl converse --keys-file reads: SE id, SP, SD AID, instance AID, key
version and the wrapped keys. It holds no key in clear, but keep it private
anyway. converse needs the key-transport key to use it (--ktk or $TSM_KTK).
With --plain-keys the file holds the three keys IN CLEAR (enc:mac:dek) instead
of the wrapped blob, so converse needs no key-transport key: for demos and
tests only; delete the file after the key rotation.

Walkthrough (demo data set, SE 0100000000000005 has no SP SDs):
  tsmctl --sp bank1 pre-personalize --se 0100000000000005 --service 1/1 \
      --ktk-file bank1.ktk --keys-out bank1-se5.keys.json
  tsmctl --sp bank1 converse --keys-file bank1-se5.keys.json --ktk-file bank1.ktk \
      --operation key-rotation --script 1-init.txt --script 2-rotate.txt`

var prePersonalizeCommand = &command{
	name:    "pre-personalize",
	summary: "create the SP's SD (temporary keys) and install a service instance on an SE (pre-personalize)",
	usage: "--se <seId> --service <number>/<version> [--qualifier-sp-name name] [--prn prn] [--msi msi]\n" +
		"       [--ktk hex | --ktk-file file] [--keys-out file [--plain-keys]]",
	help: prePersonalizeHelp,
	flags: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) int {
		o := &prePersonalizeOptions{}
		o.target.register(fs)
		fs.StringVar(&o.ktk, "ktk", "", "the SP's key-transport key in hex, to unwrap the temporary keys ($TSM_KTK)")
		fs.StringVar(&o.ktkFile, "ktk-file", "", "file holding the SP's key-transport key in hex (instead of --ktk)")
		fs.StringVar(&o.keysOut, "keys-out", "", "write a keys file for `tsmctl converse --keys-file` (mode 0600)")
		fs.BoolVar(&o.plainKeys, "plain-keys", false, "with --keys-out: write the keys IN CLEAR instead of wrapped (needs the key-transport key; demos only)")
		return func(ctx context.Context, e *env, args []string) int {
			if len(args) > 0 {
				e.errorf("pre-personalize takes no arguments")
				return exitUsage
			}
			return prePersonalize(ctx, e, o)
		}
	},
}

// prePersonalizeOptions are the flags of pre-personalize.
type prePersonalizeOptions struct {
	target       serviceTarget
	ktk, ktkFile string
	keysOut      string
	plainKeys    bool
}

// prepare checks the flags before anything is sent and returns the request
// and the key-transport key (nil when none was given).
func (o *prePersonalizeOptions) prepare() (contract.ServiceRequest, []byte, error) {
	req, err := o.target.request()
	var problems []string
	if err != nil {
		problems = append(problems, err.Error())
	}
	ktk, err := readKTK(o.ktk, o.ktkFile)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if o.plainKeys && o.keysOut == "" {
		problems = append(problems, "--plain-keys: only with --keys-out")
	}
	if o.plainKeys && ktk == nil && err == nil {
		problems = append(problems, "--plain-keys needs the key-transport key: give --ktk, --ktk-file or $TSM_KTK")
	}
	if len(problems) > 0 {
		return req, nil, errors.New(strings.Join(problems, "\n"))
	}
	return req, ktk, nil
}

// readKTK reads the SP's key-transport key from --ktk, --ktk-file or
// $TSM_KTK (nil, nil when none is given). Errors never show the key.
func readKTK(flagValue, file string) ([]byte, error) {
	if flagValue != "" && file != "" {
		return nil, errors.New("give --ktk or --ktk-file, not both")
	}
	name, value := "--ktk", flagValue
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--ktk-file: %v", err)
		}
		name, value = "--ktk-file "+file, strings.TrimSpace(string(b))
	}
	if value == "" {
		name, value = "$TSM_KTK", os.Getenv("TSM_KTK")
	}
	if value == "" {
		return nil, nil
	}
	k, err := keycustody.ParseAESKey(name, value)
	if err != nil {
		return nil, fmt.Errorf("%v (the key-transport key the SP was enrolled with)", err)
	}
	return k, nil
}

func prePersonalize(ctx context.Context, e *env, o *prePersonalizeOptions) int {
	req, ktk, err := o.prepare()
	if err != nil {
		e.errorf("pre-personalize:\n%v", err)
		return exitUsage
	}
	c, done, err := e.client()
	if err != nil {
		e.errorf("%v", err)
		return exitFailed
	}
	defer done()
	var resp contract.PrePersonalizeResponse
	r, err := c.Call(ctx, topology.OpPrePersonalize, req, &resp)
	if err != nil {
		e.errorf("pre-personalize: %v", err)
		return exitFailed
	}
	if e.g.json {
		e.printReply(r)
	} else {
		printBody(e, r.Body)
	}
	if err := r.Err(); err != nil {
		e.errorf("pre-personalize: %s", failureText(err))
		return exitFailed
	}
	return e.handleTemporaryKeys(c.SPID(), &resp, ktk, o)
}

// handleTemporaryKeys prints the KVN and KCVs of the temporary keys and
// writes the keys file.
func (e *env) handleTemporaryKeys(spID string, resp *contract.PrePersonalizeResponse, ktk []byte, o *prePersonalizeOptions) int {
	tk := resp.TemporaryKeys
	if tk == nil {
		e.human("no temporary keys in the response: the SP already had its security domain on the SE (its own keys open it)\n")
		if o.keysOut != "" {
			e.errorf("--keys-out: nothing written, the response carries no temporary keys")
		}
		return exitOK
	}
	var keys *temporaryKeySet
	if ktk != nil {
		k, err := unwrapKeySet(ktk, tk)
		if err != nil {
			e.errorf("temporary keys: %v", err)
			return exitFailed
		}
		defer k.clear()
		keys = k
		e.human("temporary keys of SD %s: KVN %02X, %s, KCV ENC %X MAC %X DEK %X\n",
			resp.SecurityDomainAID, tk.KeyVersion, tk.Algorithm, k.kcv[0], k.kcv[1], k.kcv[2])
	} else {
		e.human("temporary keys of SD %s: KVN %02X, %s, wrapped under the key-transport key (give --ktk to check them)\n",
			resp.SecurityDomainAID, tk.KeyVersion, tk.Algorithm)
	}
	if o.keysOut == "" {
		return exitOK
	}
	kf := keysFile{Comment: keysFileComment, SEID: resp.SEID, SPID: spID, SecurityDomainAID: resp.SecurityDomainAID,
		InstanceAID: resp.InstanceAID, ServiceID: resp.ServiceID, KeyVersion: tk.KeyVersion, Algorithm: tk.Algorithm}
	if kf.SEID == "" {
		kf.SEID = strings.ToUpper(o.target.se)
	}
	if o.plainKeys {
		kf.Comment = keysFilePlainComment
		kf.Keys = upper(keys.enc) + ":" + upper(keys.mac) + ":" + upper(keys.dek)
	} else {
		kf.Wrapped = strings.ToUpper(tk.Wrapped)
	}
	if err := writeKeysFile(o.keysOut, &kf); err != nil {
		e.errorf("--keys-out: %v", err)
		return exitFailed
	}
	what := "wrapped keys"
	if o.plainKeys {
		what = "keys IN CLEAR"
	}
	e.human("keys file %s written (%s, mode 0600): tsmctl converse --keys-file %s\n", o.keysOut, what, o.keysOut)
	return exitOK
}

// temporaryKeySet is an unwrapped temporary key set with its KCVs.
type temporaryKeySet struct {
	enc, mac, dek []byte
	kcv           [3][]byte
}

func (k *temporaryKeySet) clear() {
	clear(k.enc)
	clear(k.mac)
	clear(k.dek)
}

// unwrapKeySet unwraps temporaryKeys under the key-transport key and checks
// them against the algorithm the response names.
func unwrapKeySet(ktk []byte, tk *contract.TemporaryKeys) (*temporaryKeySet, error) {
	enc, mac, dek, err := keycustody.UnwrapTemporaryKeys(ktk, tk.Wrapped)
	if err != nil {
		return nil, fmt.Errorf("%v: is it the key-transport key this SP was enrolled with?", err)
	}
	k := &temporaryKeySet{enc: enc, mac: mac, dek: dek}
	if tk.Algorithm == contract.TemporaryKeyAlgorithm && len(enc) != 16 {
		k.clear()
		return nil, fmt.Errorf("the response says %s, the unwrapped keys have %d bytes each", tk.Algorithm, len(enc))
	}
	for i, key := range [][]byte{enc, mac, dek} {
		if k.kcv[i], err = gpcrypto.AESKCV(key); err != nil {
			k.clear()
			return nil, fmt.Errorf("key check value: %v", err)
		}
	}
	return k, nil
}

const (
	keysFileComment = "tsmctl pre-personalize keys file: the temporary keys of an SP security domain, wrapped under the SP's " +
		"key-transport key. Use: tsmctl converse --keys-file <this file> --ktk-file <ktk> ... Rotate the keys (put-key) at once."
	keysFilePlainComment = "tsmctl pre-personalize keys file WITH THE KEYS IN CLEAR (--plain-keys): demos only. Use: tsmctl converse " +
		"--keys-file <this file> ... Rotate the keys (put-key) at once, then delete this file."
)

// keysFile is what pre-personalize --keys-out writes and converse
// --keys-file reads: exactly one of Wrapped and Keys is set.
type keysFile struct {
	Comment           string              `json:"comment"`
	SEID              string              `json:"seId"`
	SPID              string              `json:"spId,omitempty"`
	SecurityDomainAID string              `json:"securityDomainAid"`
	InstanceAID       string              `json:"instanceAid,omitempty"`
	ServiceID         *contract.ServiceID `json:"serviceId,omitempty"`
	// KeyVersion is the KVN as a number (48 = 0x30), as in temporaryKeys.
	KeyVersion int    `json:"keyVersion"`
	Algorithm  string `json:"algorithm"`
	// Wrapped is temporaryKeys.wrapped: ENC || MAC || DEK under the KTK.
	Wrapped string `json:"wrapped,omitempty"`
	// Keys is enc:mac:dek in clear hex (--plain-keys only).
	Keys string `json:"keys,omitempty"`
}

// writeKeysFile writes f with mode 0600 (also when it replaces a file).
func writeKeysFile(path string, kf *keysFile) error {
	b, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loadKeysFile reads a keys file; errors never show key material.
func loadKeysFile(path string) (*keysFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--keys-file: %v", err)
	}
	var kf keysFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return nil, fmt.Errorf("--keys-file %s: not a keys file of tsmctl pre-personalize --keys-out (bad JSON)", path)
	}
	switch {
	case kf.Wrapped == "" && kf.Keys == "":
		return nil, fmt.Errorf("--keys-file %s: holds neither wrapped nor keys", path)
	case kf.Wrapped != "" && kf.Keys != "":
		return nil, fmt.Errorf("--keys-file %s: holds both wrapped and keys; keep one", path)
	case kf.KeyVersion < 0 || kf.KeyVersion > 0x7F:
		return nil, fmt.Errorf("--keys-file %s: keyVersion %d is not a key version (0 to 127)", path, kf.KeyVersion)
	}
	return &kf, nil
}

// serviceActions maps the actions of `tsmctl service` to operations.
var serviceActions = map[string]string{
	"activate":  topology.OpActivateService,
	"suspend":   topology.OpSuspendService,
	"resume":    topology.OpResumeService,
	"terminate": topology.OpTerminateService,
	"state":     topology.OpGetServiceState,
}

var serviceCommand = &command{
	name:    "service",
	summary: "activate, suspend, resume or terminate a service instance, or show its state",
	usage:   "activate|suspend|resume|terminate|state --se <seId> --service <number>/<version> [--qualifier-sp-name name] [--prn prn] [--msi msi]",
	help: `Sends activate-service, suspend-service, resume-service, terminate-service or
get-service-state and prints the instance's state, one line:
  SE <seId> service <number>/<version> instance <aid>: <state> [(reason)]
With --json the response is printed as it came. A terminated instance is
removed from the card: its state is then not-deployed. Exit status 1 when the
response is Failed or Expired (the error code and message go to stderr).
Example:
  tsmctl --sp bank1 service activate --se 0100000000000005 --service 1/1`,
	flags: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) int {
		t := &serviceTarget{}
		t.register(fs)
		return func(ctx context.Context, e *env, args []string) int {
			if len(args) != 1 || serviceActions[args[0]] == "" {
				e.errorf("service needs one action: activate, suspend, resume, terminate or state")
				return exitUsage
			}
			req, err := t.request()
			if err != nil {
				e.errorf("service %s:\n%v", args[0], err)
				return exitUsage
			}
			var resp contract.ServiceStateResponse
			return e.callAndPrint(ctx, serviceActions[args[0]], req, &resp, func() {
				fmt.Fprintln(e.stdout, serviceStateLine(req, &resp))
			})
		}
	},
}

// serviceStateLine is the human line of a service response.
func serviceStateLine(req contract.ServiceRequest, r *contract.ServiceStateResponse) string {
	se, svc := r.SEID, req.ServiceID
	if se == "" {
		se = req.SEID
	}
	if r.ServiceID != nil {
		svc = *r.ServiceID
	}
	line := fmt.Sprintf("SE %s service %s/%s", se, svc.Number, svc.Version)
	if r.InstanceAID != "" {
		line += " instance " + r.InstanceAID
	}
	line += ": " + r.State
	if r.Reason != "" {
		line += " (" + r.Reason + ")"
	}
	if r.Status == contract.StatusWithWarning && r.Error != nil {
		line += fmt.Sprintf(" [warning %s: %s]", r.Error.Code, r.Error.Message)
	}
	return line
}
