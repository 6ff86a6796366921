package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tsmhub/tsmhub/pkg/contract"
	"github.com/tsmhub/tsmhub/pkg/spclient"
	"github.com/tsmhub/tsmhub/pkg/topology"
)

var seIDCommand = &command{
	name:    "se-id",
	summary: "resolve a mobile subscription identity (MSI) to the SE id (get-se-id)",
	usage:   "--msi +4915112345678 [--msi-type MSISDN]",
	flags: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) int {
		msi := fs.String("msi", "", "the MSI, e.g. +4915112345678 (required)")
		msiType := fs.String("msi-type", contract.MSITypeMSISDN, "MSISDN or MDN")
		return func(ctx context.Context, e *env, args []string) int {
			if *msi == "" || len(args) > 0 {
				e.errorf("se-id needs --msi and no arguments")
				return exitUsage
			}
			var resp contract.GetSEIDResponse
			return e.callAndPrint(ctx, topology.OpGetSEID, contract.GetSEIDRequest{MSI: *msi, MSIType: *msiType}, &resp, func() {
				fmt.Fprintf(e.stdout, "%s\t%s\n", resp.SEID, resp.SEIDType)
			})
		}
	},
}

var seDataCommand = &command{
	name:    "se-data",
	summary: "show what tsmhub knows of an SE, with this SP's SD and services on it (get-se-data)",
	usage:   "--se <seId> | --msi <msi>",
	flags: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) int {
		se := fs.String("se", "", "the SE id (CIN in hex)")
		msi := fs.String("msi", "", "the MSI, instead of --se")
		return func(ctx context.Context, e *env, args []string) int {
			if (*se == "" && *msi == "") || len(args) > 0 {
				e.errorf("se-data needs --se or --msi and no arguments")
				return exitUsage
			}
			var resp contract.GetSEDataResponse
			return e.callAndPrint(ctx, topology.OpGetSEData, contract.GetSEDataRequest{SEID: strings.ToUpper(*se), MSI: *msi}, &resp, func() {
				printSEData(e, &resp)
			})
		}
	},
}

func printSEData(e *env, r *contract.GetSEDataResponse) {
	w := e.stdout
	fmt.Fprintf(w, "SE %s (%s)\n", r.SEID, r.SEIDType)
	d := r.SEData
	if d == nil {
		return
	}
	fmt.Fprintf(w, "  MNO %s, %s, configuration %s, profile %s\n", d.MNO, d.SEType, d.Configuration, d.ProfileID)
	fmt.Fprintf(w, "  GP %s, Java Card %s, certification %s, expires %s\n", d.GPVersion, d.JavaCardVersion,
		d.CertificationLevel, d.ExpiresAt.Format(time.RFC3339))
	if sd := d.SecurityDomain; sd != nil {
		fmt.Fprintf(w, "  security domain %s: %s, key version %02X, master key index %d\n", sd.AID, sd.LifeCycle, sd.KeyVersion, sd.MasterKeyIndex)
	} else {
		fmt.Fprintf(w, "  no security domain of this SP\n")
	}
	for _, s := range d.Services {
		q := ""
		if s.ServiceQualifier != nil {
			q = fmt.Sprintf(" (%s %s)", s.ServiceQualifier.SPName, s.ServiceQualifier.PRN)
		}
		fmt.Fprintf(w, "  service %s:%s%s instance %s: %s\n", s.ServiceID.Number, s.ServiceID.Version, q, s.InstanceAID, s.State)
	}
}

var callCommand = &command{
	name:    "call",
	summary: "send any operation with a JSON body and print the JSON response",
	usage:   "<op> [--data '{...}' | --data @file] [--request-id id]",
	help: `Operations: ` + strings.Join(topology.Operations, ", ") + `.
The response is printed as JSON whatever --json says; the exit status is 1 when
its status is Failed or Expired. Example:
  tsmctl call activate-service --data '{"seId":"0102030405060708","serviceId":{"number":"1","version":"1"}}'`,
	flags: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) int {
		data := fs.String("data", "{}", "request body: JSON, or @file to read it from a file")
		requestID := fs.String("request-id", "", "ce-id to use (default: a fresh one); re-using one gets the original response")
		return func(ctx context.Context, e *env, args []string) int {
			if len(args) != 1 {
				e.errorf("call needs exactly one operation")
				return exitUsage
			}
			body := []byte(*data)
			if strings.HasPrefix(*data, "@") {
				b, err := os.ReadFile(strings.TrimPrefix(*data, "@"))
				if err != nil {
					e.errorf("%v", err)
					return exitUsage
				}
				body = b
			}
			if !json.Valid(body) {
				e.errorf("--data is not valid JSON")
				return exitUsage
			}
			var opts []spclient.CallOption
			if *requestID != "" {
				opts = append(opts, spclient.WithRequestID(*requestID))
			}
			c, done, err := e.client()
			if err != nil {
				e.errorf("%v", err)
				return exitFailed
			}
			defer done()
			r, err := c.Call(ctx, args[0], json.RawMessage(body), nil, opts...)
			if err != nil {
				e.errorf("%v", err)
				return exitFailed
			}
			printBody(e, r.Body)
			if !r.OK() {
				return exitFailed
			}
			return exitOK
		}
	},
}

// callAndPrint runs one request, prints its raw body with --json or the
// human text otherwise, and maps the status to the exit status.
func (e *env) callAndPrint(ctx context.Context, op string, req, resp any, human func()) int {
	c, done, err := e.client()
	if err != nil {
		e.errorf("%v", err)
		return exitFailed
	}
	defer done()
	r, err := c.Call(ctx, op, req, resp)
	if err != nil {
		e.errorf("%v", err)
		return exitFailed
	}
	if e.g.json {
		printBody(e, r.Body)
	}
	if err := r.Err(); err != nil {
		if !e.g.json {
			e.errorf("%s", failureText(err))
		}
		return exitFailed
	}
	if !e.g.json {
		human()
	}
	return exitOK
}

// failureText is the one-line text of a failed response.
func failureText(err error) string {
	var fe *spclient.FailedError
	if errors.As(err, &fe) {
		if fe.Result.Error != nil {
			return fmt.Sprintf("%s: %s: %s", fe.Result.Status, fe.Result.Error.Code, fe.Result.Error.Message)
		}
		return string(fe.Result.Status)
	}
	return err.Error()
}

// printBody prints a JSON body indented (as it is when it is not JSON).
func printBody(e *env, body []byte) {
	var buf bytes.Buffer
	if err := json.Indent(&buf, body, "", "  "); err != nil {
		e.stdout.Write(body)
		fmt.Fprintln(e.stdout)
		return
	}
	buf.WriteByte('\n')
	e.stdout.Write(buf.Bytes())
}
