// Command sesim-pcsc runs a self-contained se-simulator for PC/SC tools: an
// embedded NATS server (JetStream, loopback, random port), the se-simulator
// service in-process, and one demo card, enrolled over the bus as the
// registry would enrol it, served in vsmartcard's virtual reader through
// vpcd. `make pcsc-test` (test/pcsc/run.sh) runs it next to pcscd.
//
// When the card exists it prints one line on stdout:
//
//	ready http=127.0.0.1:PORT se=SEID
//
// (the se-simulator's HTTP API, for the fleet's view of the card) and serves
// until SIGINT or SIGTERM. Logs go to stderr as JSON. Everything listens on
// loopback only; the data directory is a fresh temporary one unless -data
// is given.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsmhub/tsmhub/pkg/bus"
	"github.com/tsmhub/tsmhub/pkg/devstack"
	"github.com/tsmhub/tsmhub/pkg/events"
	"github.com/tsmhub/tsmhub/pkg/natsembed"
	"github.com/tsmhub/tsmhub/pkg/ops"
	"github.com/tsmhub/tsmhub/pkg/servicekit"
	"github.com/tsmhub/tsmhub/pkg/topology"

	"github.com/tsmhub/tsmhub/services/sesimulator/service"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sesim-pcsc:", err)
		os.Exit(1)
	}
}

func run() error {
	vpcdAddr := flag.String("vpcd", "127.0.0.1:35963", "vpcd address (35963: reader \"Virtual PCD 00 00\")")
	seID := flag.String("se", "0100000000000002", "SE id of the demo card (one of the demo data set's SEs)")
	dataDir := flag.String("data", "", "data directory (default: a new temporary directory, removed on exit)")
	startTimeout := flag.Duration("start-timeout", 60*time.Second, "how long to wait for the card to exist")
	flag.Parse()

	demo, ok := demoSE(strings.ToUpper(*seID))
	if !ok {
		return fmt.Errorf("-se %s is not an SE of the demo data set (pkg/devstack.DemoSEs)", *seID)
	}
	dir := *dataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "sesim-pcsc-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := ops.NewLogger(service.Name)

	ns, err := natsembed.Start(natsembed.Config{Host: "127.0.0.1", Port: -1, StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()

	bound := make(chan string, 1)
	cfg := service.Config{
		Kit: servicekit.Config{Name: service.Name, NATSURL: ns.ClientURL(), DataDir: filepath.Join(dir, service.Name),
			HTTPAddr: "127.0.0.1:0", HTTPBound: bound, StreamReplicas: 1, Workers: 4, Log: log},
		CacheCards: 16,
		VPCDAddr:   *vpcdAddr,
		VPCDSE:     demo.SEID,
	}
	svcCtx, stopService := context.WithCancel(ctx)
	defer stopService()
	done := make(chan error, 1)
	go func() { done <- service.Run(svcCtx, cfg) }()
	stopped := func() error {
		stopService()
		select {
		case err := <-done:
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		case <-time.After(30 * time.Second):
			return errors.New("the se-simulator did not stop within 30s")
		}
	}

	var httpAddr string
	select {
	case httpAddr = <-bound:
	case err := <-done:
		return fmt.Errorf("se-simulator: %w", err)
	case <-ctx.Done():
		return stopped()
	}
	if err := enrol(ctx, ns.ClientURL(), demo); err != nil {
		_ = stopped()
		return err
	}
	if err := waitCard(ctx, httpAddr, demo.SEID, *startTimeout); err != nil {
		_ = stopped()
		return err
	}
	fmt.Printf("ready http=%s se=%s\n", httpAddr, demo.SEID)
	select {
	case <-ctx.Done():
	case err := <-done:
		return fmt.Errorf("se-simulator stopped: %w", err)
	}
	return stopped()
}

func demoSE(seID string) (devstack.DemoSE, bool) {
	for _, se := range devstack.DemoSEs {
		if se.SEID == seID {
			return se, true
		}
	}
	return devstack.DemoSE{}, false
}

// enrol publishes the demo SE's record as the registry does when an SE is
// enrolled (PUT /v1/ses/{seId}): the se-simulator manufactures its card.
func enrol(ctx context.Context, natsURL string, se devstack.DemoSE) error {
	nc, err := nats.Connect(natsURL, nats.Name("sesim-pcsc"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	rec := events.SERecord{SEID: se.SEID, MSI: se.MSI, MSIType: "MSISDN", MNO: se.MNO, SEType: se.SEType,
		Configuration: se.Configuration, ProfileID: "demo-profile-1", GPVersion: "2.3.1", JavaCardVersion: "3.0.5",
		CertificationLevel: "EMVCo", Status: "active", UpdatedAt: time.Now().UTC()}
	for _, sp := range devstack.DemoSPs {
		rec.PreIssuedSPDomains = append(rec.PreIssuedSPDomains, events.PreIssuedSD{SPID: sp.SPID, AID: sp.SDAID})
	}
	ev, err := bus.NewEvent(bus.NewID(), topology.ServiceSourcePrefix+"registry", events.TypeRegistrySE, se.SEID, rec)
	if err != nil {
		return err
	}
	msg, err := bus.Encode(topology.RegistrySE(se.SEID), ev)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(pctx, msg); err != nil {
		return fmt.Errorf("publish the SE record: %w", err)
	}
	return nil
}

// waitCard polls the se-simulator's HTTP API until the card exists.
func waitCard(ctx context.Context, httpAddr, seID string, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	url := "http://" + httpAddr + "/v1/cards/" + seID
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(end) {
			return fmt.Errorf("the card of SE %s did not appear within %s", seID, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
