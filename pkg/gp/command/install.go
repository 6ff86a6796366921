package command

import (
	"fmt"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// INSTALL roles (P1, GPC Table 11-41).
const (
	InstallForLoad                      byte = 0x02
	InstallForInstall                   byte = 0x04
	InstallForMakeSelectable            byte = 0x08
	InstallForInstallAndMakeSelectable  byte = 0x0C
	InstallForLoadInstallMakeSelectable byte = 0x0E
	InstallForExtradition               byte = 0x10
	InstallForPersonalization           byte = 0x20
	InstallForRegistryUpdate            byte = 0x40
	// InstallMore is set in P1 when more INSTALL commands follow.
	InstallMore byte = 0x80
)

// DefaultInstallParams is the minimal install parameters field: an empty C9
// application-specific parameters object, which GPC Table 11-49 makes
// mandatory.
var DefaultInstallParams = []byte{0xC9, 0x00}

// defaultPrivileges is the privileges field used when none is given.
var defaultPrivileges = []byte{0x00, 0x00, 0x00}

// Install assembles an INSTALL command from the role (P1), P2 and the data
// field without the token; token is appended as the last LV (an empty LV
// when nil). Le 00 is sent (the response is 00 or a DM confirmation).
func Install(p1, p2 byte, dataWithoutToken, token []byte) (apdu.Command, error) {
	data := tlv.AppendLV(append([]byte(nil), dataWithoutToken...), token)
	return gp(INSInstall, p1, p2, data, 0)
}

// InstallTokenDTBS returns the data an INSTALL token signs (GPC Tables C-4
// to C-8, C-10): P1 P2 Lc (of the data without the token LV) data.
func InstallTokenDTBS(p1, p2 byte, dataWithoutToken []byte) []byte {
	return TokenDTBS(p1, p2, dataWithoutToken)
}

// LoadParams are the fields of INSTALL [for load] (GPC Table 11-42).
type LoadParams struct {
	// ELF is the Executable Load File AID (mandatory).
	ELF []byte
	// SD is the AID of the SD to associate the ELF with (nil: the SD
	// processing the command).
	SD []byte
	// LFDBHash is the Load File Data Block hash, mandatory with a DAP, a
	// token or a ciphered LFDB.
	LFDBHash []byte
	// Params are the load parameters (e.g. EF{C6, C8}).
	Params []byte
	// Token is the load token (nil: none).
	Token []byte
}

// Data returns the data field without the token LV.
func (p LoadParams) Data() ([]byte, error) {
	if err := checkAID("ELF AID", p.ELF); err != nil {
		return nil, err
	}
	if err := checkOptionalAID("SD AID", p.SD); err != nil {
		return nil, err
	}
	var d []byte
	d = tlv.AppendLV(d, p.ELF)
	d = tlv.AppendLV(d, p.SD)
	d = tlv.AppendLV(d, p.LFDBHash)
	d = tlv.AppendLV(d, p.Params)
	return d, nil
}

// InstallLoad returns INSTALL [for load].
func InstallLoad(p LoadParams) (apdu.Command, error) {
	d, err := p.Data()
	if err != nil {
		return apdu.Command{}, err
	}
	return Install(InstallForLoad, 0x00, d, p.Token)
}

// InstallParams are the fields of INSTALL [for install] (GPC Table 11-43).
type InstallParams struct {
	ELF      []byte
	Module   []byte
	Instance []byte
	// Privileges: 1 or 3 bytes; nil means 00 00 00.
	Privileges []byte
	// Params: install parameters; nil means DefaultInstallParams (C9 00).
	Params []byte
	Token  []byte
}

// Data returns the data field without the token LV.
func (p InstallParams) Data() ([]byte, error) {
	for _, a := range []struct {
		n string
		v []byte
	}{{"ELF AID", p.ELF}, {"module AID", p.Module}, {"instance AID", p.Instance}} {
		if err := checkAID(a.n, a.v); err != nil {
			return nil, err
		}
	}
	priv, err := privilegesField(p.Privileges)
	if err != nil {
		return nil, err
	}
	params := p.Params
	if params == nil {
		params = DefaultInstallParams
	}
	var d []byte
	d = tlv.AppendLV(d, p.ELF)
	d = tlv.AppendLV(d, p.Module)
	d = tlv.AppendLV(d, p.Instance)
	d = tlv.AppendLV(d, priv)
	d = tlv.AppendLV(d, params)
	return d, nil
}

func privilegesField(p []byte) ([]byte, error) {
	switch len(p) {
	case 0:
		if p == nil {
			return defaultPrivileges, nil
		}
		return nil, fmt.Errorf("%w: empty privileges", ErrParam)
	case 1, 3:
		return p, nil
	}
	return nil, fmt.Errorf("%w: privileges of %d bytes", ErrParam, len(p))
}

// InstallInstall returns INSTALL [for install], or [for install and make
// selectable] when makeSelectable is set.
func InstallInstall(p InstallParams, makeSelectable bool) (apdu.Command, error) {
	d, err := p.Data()
	if err != nil {
		return apdu.Command{}, err
	}
	p1 := InstallForInstall
	if makeSelectable {
		p1 = InstallForInstallAndMakeSelectable
	}
	return Install(p1, 0x00, d, p.Token)
}

// MakeSelectableParams are the fields of INSTALL [for make selectable]
// (GPC Table 11-44).
type MakeSelectableParams struct {
	Instance []byte
	// Privileges: only Card Reset is honoured; nil means 00 00 00.
	Privileges []byte
	Params     []byte
	Token      []byte
}

// Data returns the data field without the token LV.
func (p MakeSelectableParams) Data() ([]byte, error) {
	if err := checkAID("instance AID", p.Instance); err != nil {
		return nil, err
	}
	priv, err := privilegesField(p.Privileges)
	if err != nil {
		return nil, err
	}
	d := []byte{0x00, 0x00}
	d = tlv.AppendLV(d, p.Instance)
	d = tlv.AppendLV(d, priv)
	d = tlv.AppendLV(d, p.Params)
	return d, nil
}

// InstallMakeSelectable returns INSTALL [for make selectable].
func InstallMakeSelectable(p MakeSelectableParams) (apdu.Command, error) {
	d, err := p.Data()
	if err != nil {
		return apdu.Command{}, err
	}
	return Install(InstallForMakeSelectable, 0x00, d, p.Token)
}

// ExtraditionParams are the fields of INSTALL [for extradition] (GPC Table
// 11-45): move AID (an application or an ELF) to the security domain SD.
type ExtraditionParams struct {
	SD     []byte
	AID    []byte
	Params []byte
	Token  []byte
}

// Data returns the data field without the token LV.
func (p ExtraditionParams) Data() ([]byte, error) {
	if err := checkAID("SD AID", p.SD); err != nil {
		return nil, err
	}
	if err := checkAID("AID", p.AID); err != nil {
		return nil, err
	}
	var d []byte
	d = tlv.AppendLV(d, p.SD)
	d = append(d, 0x00)
	d = tlv.AppendLV(d, p.AID)
	d = append(d, 0x00)
	d = tlv.AppendLV(d, p.Params)
	return d, nil
}

// InstallExtradition returns INSTALL [for extradition].
func InstallExtradition(p ExtraditionParams) (apdu.Command, error) {
	d, err := p.Data()
	if err != nil {
		return apdu.Command{}, err
	}
	return Install(InstallForExtradition, 0x00, d, p.Token)
}

// RegistryUpdateParams are the fields of INSTALL [for registry update] (GPC
// Table 11-46). SD nil keeps the current association; AID nil targets the
// OPEN itself; Privileges nil leaves the privileges unchanged.
type RegistryUpdateParams struct {
	SD         []byte
	AID        []byte
	Privileges []byte
	Params     []byte
	Token      []byte
}

// Data returns the data field without the token LV.
func (p RegistryUpdateParams) Data() ([]byte, error) {
	if err := checkOptionalAID("SD AID", p.SD); err != nil {
		return nil, err
	}
	if err := checkOptionalAID("AID", p.AID); err != nil {
		return nil, err
	}
	if l := len(p.Privileges); l != 0 && l != 1 && l != 3 {
		return nil, fmt.Errorf("%w: privileges of %d bytes", ErrParam, l)
	}
	var d []byte
	d = tlv.AppendLV(d, p.SD)
	d = append(d, 0x00)
	d = tlv.AppendLV(d, p.AID)
	d = tlv.AppendLV(d, p.Privileges)
	d = tlv.AppendLV(d, p.Params)
	return d, nil
}

// InstallRegistryUpdate returns INSTALL [for registry update].
func InstallRegistryUpdate(p RegistryUpdateParams) (apdu.Command, error) {
	d, err := p.Data()
	if err != nil {
		return apdu.Command{}, err
	}
	return Install(InstallForRegistryUpdate, 0x00, d, p.Token)
}

// InstallPersonalization returns INSTALL [for personalization] of an
// application (GPC Table 11-47): the STORE DATA commands that follow go to
// that application.
func InstallPersonalization(aid []byte) (apdu.Command, error) {
	if err := checkAID("AID", aid); err != nil {
		return apdu.Command{}, err
	}
	d := []byte{0x00, 0x00}
	d = tlv.AppendLV(d, aid)
	d = append(d, 0x00, 0x00)
	return Install(InstallForPersonalization, 0x00, d, nil)
}
