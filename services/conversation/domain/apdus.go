package domain

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/tsmhub/tsmhub/pkg/gp/apdu"
	"github.com/tsmhub/tsmhub/pkg/gp/card"
	"github.com/tsmhub/tsmhub/pkg/gp/command"
	"github.com/tsmhub/tsmhub/pkg/gp/tlv"
)

// The card commands of the procedures, plain (the script router wraps them in
// its SCP03 session with the central SD), built with pkg/gp/command. Each is
// uppercase hex of a short C-APDU.

// sdPrivileges are the privileges of an SP SD: Security Domain only (80 00 00).
var sdPrivileges = []byte{0x80, 0x00, 0x00}

func cmdHex(c apdu.Command, err error) (string, error) {
	if err != nil {
		return "", err
	}
	return strings.ToUpper(hex.EncodeToString(c.Bytes())), nil
}

func aidBytes(name, aid string) ([]byte, error) {
	b, err := hex.DecodeString(aid)
	if err != nil || len(b) < 5 || len(b) > 16 {
		return nil, fmt.Errorf("%s %q is not an AID (5 to 16 bytes in hex)", name, aid)
	}
	return b, nil
}

// CreateSDCommands creates the SP SD sdAID from the SSD package: INSTALL [for
// install and make selectable] (privileges 80 00 00, parameters C9 00), then
// INSTALL [for personalization] of the SD so that the PUT KEY the router
// appends goes to it.
//
//	80E60C00 Lc 07 A0000001515350 08 A000000151535041 LV(SD) 03 800000 02 C900 00 00
//	80E62000 Lc 00 00 LV(SD) 00 00 00 00
func CreateSDCommands(sdAID string) ([]string, error) {
	sd, err := aidBytes("security domain AID", sdAID)
	if err != nil {
		return nil, err
	}
	install, err := cmdHex(command.InstallInstall(command.InstallParams{ELF: card.SSDPackageAID, Module: card.SSDModuleAID,
		Instance: sd, Privileges: sdPrivileges, Params: command.DefaultInstallParams}, true))
	if err != nil {
		return nil, err
	}
	perso, err := cmdHex(command.InstallPersonalization(sd))
	if err != nil {
		return nil, err
	}
	return []string{install, perso}, nil
}

// InstallInstanceCommands instantiates the generic application for the SP:
// INSTALL [for install and make selectable] of module moduleAID of ELF elfAID
// as instanceAID (privileges 00 00 00, parameters C9 LV(installParams)), then
// INSTALL [for extradition] of the instance into the SP SD.
//
//	80E60C00 Lc LV(ELF) LV(module) LV(instance) 03 000000 LV(C9 LV(params)) 00 00
//	80E61000 Lc LV(SD) 00 LV(instance) 00 00 00 00
func InstallInstanceCommands(elfAID, moduleAID, instanceAID, installParams, sdAID string) ([]string, error) {
	elf, err := aidBytes("ELF AID", elfAID)
	if err != nil {
		return nil, err
	}
	mod, err := aidBytes("module AID", moduleAID)
	if err != nil {
		return nil, err
	}
	inst, err := aidBytes("instance AID", instanceAID)
	if err != nil {
		return nil, err
	}
	sd, err := aidBytes("security domain AID", sdAID)
	if err != nil {
		return nil, err
	}
	c9, err := hex.DecodeString(installParams)
	if err != nil || len(c9) > 253 {
		return nil, fmt.Errorf("install parameters %q are not hex of at most 253 bytes", installParams)
	}
	install, err := cmdHex(command.InstallInstall(command.InstallParams{ELF: elf, Module: mod, Instance: inst,
		Params: tlv.Encode(0xC9, c9)}, true))
	if err != nil {
		return nil, err
	}
	extradite, err := cmdHex(command.InstallExtradition(command.ExtraditionParams{SD: sd, AID: inst}))
	if err != nil {
		return nil, err
	}
	return []string{install, extradite}, nil
}

// LockCommand is SET STATUS of an application to LOCKED: 80F04080 Lc AID.
func LockCommand(aid string) (string, error) {
	b, err := aidBytes("instance AID", aid)
	if err != nil {
		return "", err
	}
	return cmdHex(command.LockApp(b))
}

// UnlockCommand is SET STATUS of an application back from LOCKED: 80F04000
// Lc AID (the card model clears the LOCKED bit for any P2 without b8, GPC
// 11.10.2.3).
func UnlockCommand(aid string) (string, error) {
	b, err := aidBytes("instance AID", aid)
	if err != nil {
		return "", err
	}
	return cmdHex(command.UnlockApp(b))
}

// DeleteCommand is DELETE of one card content object: 80E40000 Lc 4F LV(AID) 00.
func DeleteCommand(aid string) (string, error) {
	b, err := aidBytes("AID", aid)
	if err != nil {
		return "", err
	}
	return cmdHex(command.Delete(b, false, nil, nil))
}

// GetStatusCommand is GET STATUS of subset p1 (80 ISD, 40 applications and
// SDs, 20 ELFs) in the TLV format, P2 02 (first) or 03 (next after 6310),
// filtered by AID prefix aid ("" for all: 4F 00): 80F2 p1 p2 Lc 4F LV(aid) 00.
func GetStatusCommand(p1 byte, next bool, aid string) (string, error) {
	var b []byte
	if aid != "" {
		var err error
		if b, err = aidBytes("AID", aid); err != nil {
			return "", err
		}
	}
	return cmdHex(command.GetStatus(p1, next, b))
}

// AuditCommands is the script of an audit, run with continueOnError: GET
// STATUS of the ISD, of applications and SDs, and of ELFs, each followed by
// GET STATUS [next] commands that collect the rest of a list answered 6310.
// The card keeps a GET STATUS cursor only within one session, so the
// continuations are in the same script; a continuation after a complete list
// fails (6985) and is ignored.
func AuditCommands() []string {
	var out []string
	add := func(p1 byte, next bool) {
		c, err := GetStatusCommand(p1, next, "")
		if err != nil {
			panic(err) // constant input
		}
		out = append(out, c)
	}
	add(command.StatusISD, false)
	add(command.StatusApps, false)
	for i := 0; i < AuditAppContinuations; i++ {
		add(command.StatusApps, true)
	}
	add(command.StatusELFs, false)
	for i := 0; i < AuditELFContinuations; i++ {
		add(command.StatusELFs, true)
	}
	return out
}

// Continuations of the audit script: a response carries at most about 232
// bytes (5 to 6 entries), so 6 continuations cover about 40 applications and
// SDs, and the whole script (11 commands) fits the smallest MNO limit.
const (
	AuditAppContinuations = 6
	AuditELFContinuations = 2
)

// commandName names a command of a procedure script by its header, for
// messages: "INSTALL [for install and make selectable] (80E60C00)". The data
// field is left out.
func commandName(cmd string) string {
	b, err := hex.DecodeString(cmd)
	if err != nil || len(b) < 4 {
		return "command"
	}
	header := strings.ToUpper(hex.EncodeToString(b[:4]))
	name := "command"
	switch b[1] {
	case command.INSInstall:
		switch b[2] &^ command.InstallMore {
		case command.InstallForInstallAndMakeSelectable:
			name = "INSTALL [for install and make selectable]"
		case command.InstallForPersonalization:
			name = "INSTALL [for personalization]"
		case command.InstallForExtradition:
			name = "INSTALL [for extradition]"
		default:
			name = "INSTALL"
		}
	case command.INSSetStatus:
		name = "SET STATUS"
	case command.INSDelete:
		name = "DELETE"
	case command.INSGetStatus:
		name = "GET STATUS"
	case command.INSPutKey:
		name = "PUT KEY"
	}
	return name + " (" + header + ")"
}

// swOf returns the status word of an R-APDU in hex, ok false when there is none.
func swOf(resp string) (apdu.Response, bool) {
	r, err := apdu.ParseResponseHex(resp)
	return r, err == nil
}

func hexDecode(s string) ([]byte, error) { return hex.DecodeString(s) }
