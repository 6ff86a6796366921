package main

import (
	"bufio"
	"context"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// handlerTotals is the sum of handler seconds and the number of handled
// messages per consumer, from the services' tsm_handler_duration_seconds
// histograms (pkg/bus records every handler call, its bbolt commit
// included).
type handlerTotals map[string][2]float64

// scrapeHandlers reads /metrics of every service instance. A consumer name
// is unique in the stack except the MNO adapters', which carry their MNO.
func (s *system) scrapeHandlers(ctx context.Context) handlerTotals {
	out := handlerTotals{}
	for _, spec := range s.specs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+spec.HTTPAddr+"/metrics", nil)
		if err != nil {
			continue
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			var idx int
			switch {
			case strings.HasPrefix(line, "tsm_handler_duration_seconds_sum{"):
				idx = 0
			case strings.HasPrefix(line, "tsm_handler_duration_seconds_count{"):
				idx = 1
			default:
				continue
			}
			consumer := labelValue(line, "consumer")
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if consumer == "" || err != nil {
				continue
			}
			t := out[consumer]
			t[idx] += v
			out[consumer] = t
		}
		resp.Body.Close()
	}
	return out
}

// labelValue extracts a label's value from a Prometheus text line.
func labelValue(line, label string) string {
	i := strings.Index(line, label+`="`)
	if i < 0 {
		return ""
	}
	rest := line[i+len(label)+2:]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return rest[:j]
}

// HandlerStat is one consumer's handlers during a window: how many messages
// and how long each took on average (decode, validation, use case and the
// bbolt commit it waits for). The time a message waited for its worker is
// not in it: a hop much longer than its handler is queueing.
type HandlerStat struct {
	Consumer string  `json:"consumer"`
	Messages int64   `json:"messages"`
	MeanMs   float64 `json:"meanMs"`
	// PerScript is messages per send-script in the window.
	PerScript float64 `json:"perScript"`
}

// handlerDelta compares two scrapes.
func handlerDelta(a, b handlerTotals, scripts int64) []HandlerStat {
	var out []HandlerStat
	for c, tb := range b {
		ta := a[c]
		n := tb[1] - ta[1]
		if n <= 0 {
			continue
		}
		h := HandlerStat{Consumer: c, Messages: int64(n), MeanMs: round((tb[0]-ta[0])/n*1000, 3)}
		if scripts > 0 {
			h.PerScript = round(n/float64(scripts), 2)
		}
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Consumer < out[j].Consumer })
	return out
}
