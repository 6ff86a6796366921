// Package app holds the registry's use cases: enrolling and changing MNOs,
// SPs, catalog services and SEs, bulk import, and the look-ups SP requests
// need. It works on a Repository (no NATS, no CloudEvents, no HTTP); the
// adapters publish every saved record, the ports translate requests.
package app

import (
	"time"

	"github.com/tsmhub/tsmhub/services/registry/domain"
)

// Outcome says what a Put did.
type Outcome int

// Put outcomes. HTTP maps Created to 201 and the others to 200.
const (
	// Created: the entity did not exist.
	Created Outcome = iota + 1
	// Updated: the entity existed and changed (its record was published).
	Updated
	// Unchanged: the entity existed with the same content; nothing was
	// written or published.
	Unchanged
)

// Registry runs the use cases.
type Registry struct {
	repo Repository
	now  func() time.Time
}

// New returns a Registry on repo; now is the clock (time.Now when nil).
func New(repo Repository, now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{repo: repo, now: now}
}

// Now is the registry's clock, in UTC.
func (r *Registry) Now() time.Time { return r.now().UTC() }

// PutMNO enrolls or updates an MNO.
func (r *Registry) PutMNO(id string, in domain.MNOInput) (domain.MNO, Outcome, error) {
	m, err := domain.NewMNO(id, in)
	if err != nil {
		return domain.MNO{}, 0, fromValidation(err)
	}
	var outcome Outcome
	err = r.repo.Update(func(tx Tx) error {
		prev, found, err := tx.MNO(id)
		if err != nil {
			return err
		}
		switch {
		case !found:
			outcome = Created
		case prev == m:
			outcome = Unchanged
			return nil
		default:
			outcome = Updated
		}
		return tx.SaveMNO(m)
	})
	return m, outcome, err
}

// GetMNO returns an MNO.
func (r *Registry) GetMNO(id string) (domain.MNO, error) {
	var m domain.MNO
	err := r.repo.View(func(tx ReadTx) error {
		var found bool
		var err error
		if m, found, err = tx.MNO(id); err == nil && !found {
			return errorf(KindNotFound, "no MNO %q is enrolled", id)
		}
		return err
	})
	return m, err
}

// PutSP enrolls or updates an SP and its key-transport key.
func (r *Registry) PutSP(id string, in domain.SPInput) (domain.SP, Outcome, error) {
	sp, key, err := domain.NewSP(id, in)
	if err != nil {
		return domain.SP{}, 0, fromValidation(err)
	}
	var outcome Outcome
	err = r.repo.Update(func(tx Tx) error {
		prev, found, err := tx.SP(id)
		if err != nil {
			return err
		}
		if !found {
			outcome = Created
			return tx.SaveSP(sp, key)
		}
		same, err := tx.SPKeyTransportKeyEquals(id, key)
		if err != nil {
			return err
		}
		if same && prev == sp {
			outcome = Unchanged
			return nil
		}
		outcome = Updated
		return tx.SaveSP(sp, key)
	})
	return sp, outcome, err
}

// GetSP returns an SP (never its key).
func (r *Registry) GetSP(id string) (domain.SP, error) {
	var sp domain.SP
	err := r.repo.View(func(tx ReadTx) error {
		var found bool
		var err error
		if sp, found, err = tx.SP(id); err == nil && !found {
			return errorf(KindNotFound, "no SP %q is enrolled", id)
		}
		return err
	})
	return sp, err
}

// PutService enrolls or updates a catalog service; its SP must exist.
func (r *Registry) PutService(number, version string, in domain.ServiceInput) (domain.Service, Outcome, error) {
	s, err := domain.NewService(number, version, in)
	if err != nil {
		return domain.Service{}, 0, fromValidation(err)
	}
	var outcome Outcome
	err = r.repo.Update(func(tx Tx) error {
		if _, found, err := tx.SP(s.SPID); err != nil {
			return err
		} else if !found {
			return invalidField("spId", "no SP %q is enrolled: enroll the SP first", s.SPID)
		}
		prev, found, err := tx.Service(number, version)
		if err != nil {
			return err
		}
		switch {
		case !found:
			outcome = Created
		case prev.Equal(s):
			outcome = Unchanged
			return nil
		default:
			outcome = Updated
		}
		return tx.SaveService(s)
	})
	return s, outcome, err
}

// GetService returns a catalog service.
func (r *Registry) GetService(number, version string) (domain.Service, error) {
	var s domain.Service
	err := r.repo.View(func(tx ReadTx) error {
		var found bool
		var err error
		if s, found, err = tx.Service(number, version); err == nil && !found {
			return errorf(KindNotFound, "no service %s is in the catalog", domain.ServiceKey(number, version))
		}
		return err
	})
	return s, err
}
