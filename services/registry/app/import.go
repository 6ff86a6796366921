package app

import (
	"context"
	"iter"

	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// ImportLine is one line of a bulk SE import, decoded by the port.
type ImportLine struct {
	// Line number, from 1.
	Line  int
	SEID  string
	Input domain.SEInput
	// Err is set when the line could not be decoded; its text is reported as
	// the line's error, so it must say what to fix and quote no MSI.
	Err error
}

// ImportError is the problem of one line.
type ImportError struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// ImportReport counts what an import did.
type ImportReport struct {
	// Imported counts new SEs, Updated changed ones, Unchanged lines that
	// matched the stored SE exactly (nothing written or published).
	Imported  int `json:"imported"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
	// Failed counts lines that changed nothing; Errors lists them in line
	// order, up to ImportConfig.MaxErrors (ErrorsTruncated then says so).
	Failed          int           `json:"failed"`
	Errors          []ImportError `json:"errors"`
	ErrorsTruncated bool          `json:"errorsTruncated,omitempty"`
}

// ImportConfig tunes a bulk import.
type ImportConfig struct {
	// BatchSize is the number of lines per transaction (default 2000): one
	// commit and one fsync per batch instead of per SE.
	BatchSize int
	// MaxErrors bounds the errors listed in the report (default 1000); every
	// failed line is still counted.
	MaxErrors int
}

// Import defaults.
const (
	DefaultImportBatchSize = 2000
	DefaultImportMaxErrors = 1000
)

type preparedLine struct {
	line int
	se   domain.SE
	err  string
}

// ImportSEs enrolls or updates every SE of lines, in batches of one
// transaction each; each changed SE publishes its record once. A bad line
// fails alone and is reported with its number. Decoding and validation of the
// next batch overlap with the commit of the current one. A storage error
// stops the import: the report then covers the batches committed before it.
func (r *Registry) ImportSEs(ctx context.Context, lines iter.Seq[ImportLine], cfg ImportConfig) (ImportReport, error) {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultImportBatchSize
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = DefaultImportMaxErrors
	}
	batches := make(chan []preparedLine, 2)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(batches)
		batch := make([]preparedLine, 0, cfg.BatchSize)
		send := func() bool {
			select {
			case batches <- batch:
				batch = make([]preparedLine, 0, cfg.BatchSize)
				return true
			case <-stop:
				return false
			case <-ctx.Done():
				return false
			}
		}
		for l := range lines {
			p := preparedLine{line: l.Line}
			if l.Err != nil {
				p.err = l.Err.Error()
			} else if se, err := domain.NewSE(l.SEID, l.Input); err != nil {
				p.err = err.Error()
			} else {
				p.se = se
			}
			batch = append(batch, p)
			if len(batch) == cfg.BatchSize && !send() {
				return
			}
		}
		if len(batch) > 0 {
			send()
		}
	}()

	var rep ImportReport
	rep.Errors = []ImportError{}
	for batch := range batches {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		var part ImportReport
		err := r.repo.Update(func(tx Tx) error {
			part = ImportReport{} // fn may run again: start over
			refs := newRefCache()
			for _, p := range batch {
				if p.err != "" {
					part.Failed++
					part.Errors = append(part.Errors, ImportError{Line: p.line, Error: p.err})
					continue
				}
				_, outcome, err := r.putSE(tx, refs, p.se)
				if err != nil {
					e, ok := AsError(err)
					if !ok {
						return err
					}
					part.Failed++
					part.Errors = append(part.Errors, ImportError{Line: p.line, Error: e.Message})
					continue
				}
				switch outcome {
				case Created:
					part.Imported++
				case Updated:
					part.Updated++
				default:
					part.Unchanged++
				}
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
		rep.Imported += part.Imported
		rep.Updated += part.Updated
		rep.Unchanged += part.Unchanged
		rep.Failed += part.Failed
		for _, e := range part.Errors {
			if len(rep.Errors) >= cfg.MaxErrors {
				rep.ErrorsTruncated = true
				break
			}
			rep.Errors = append(rep.Errors, e)
		}
	}
	return rep, ctx.Err()
}
