// Package card is a model of a GlobalPlatform 2.3 card (the OPEN, its
// registry, the Security Domains and their secure channels) that executes
// command APDUs the way a real card would. The se-simulator service wraps it;
// tests and tools use it directly.
//
// A card is made by Manufacture for one of the SE configurations of DESIGN.md
// section 1 (Config). Transmit processes one C-APDU and returns the R-APDU;
// it never panics. The whole state, including open logical channels, selected
// applications and secure-channel sessions, round-trips through
// MarshalBinary/UnmarshalBinary so that a service can persist a card after
// every APDU batch and resume a conversation after a crash.
//
// What is modelled (GP Card Specification v2.3.1, "GPC", and Amendment D,
// "Amd D"; the project notes shared/reference/gp-card.md give byte layouts):
//
//   - logical channels 0-3 and MANAGE CHANNEL (GPC 11.7), SELECT (11.9) with
//     the FCI of GPC 11.9.3, GET DATA (11.3), GET STATUS (11.4), SET STATUS
//     (11.10), STORE DATA (11.11), PUT KEY (11.8), INSTALL (11.5), LOAD (11.6),
//     DELETE (11.2), GP command chaining (11.1.5.1);
//   - SCP03 (Amd D) with i = 00, 10, 60, 70 and SCP02 (GPC Appendix E) with
//     i = 15, 55, card side: INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, C-MAC,
//     C-DECRYPTION, R-MAC, R-ENCRYPTION, abort rules (GPC 10.2.3, Amd D 5.6);
//   - privileges (GPC Table 6-1, 11-7 to 11-9), life cycles (GPC 5, Tables
//     11-3 to 11-6), per-state command gating (GPC Table 11-1, 11-2);
//   - DAP verification including Mandated DAP, Delegated Management tokens and
//     receipts with the AES CMAC scheme (GPC Appendix C).
//
// The protocol and encoding code is the host side's: a secure channel is a
// pkg/gp/scp03 or pkg/gp/scp02 CardSession, the primitives are
// pkg/gp/gpcrypto, BER-TLV and LV fields pkg/gp/tlv, and GET STATUS entries,
// the key information template, PUT KEY data, token DTBS, receipts and DAPs
// pkg/gp/command. This package adds the card: which SD runs a channel, the
// sequence counter of each key set, command gating by life cycle, privilege
// and session state, and what a security error resets.
//
// # Configurations (DESIGN.md 1)
//
// Every card has the ISD (A000000151000000), the SSD package A0000001515350
// (module A000000151535041) under the ISD, and the generic payment ELF
// (GenericELFAID / GenericModuleAID, loaded, not instantiated) under the
// central SD. Privileges are GPC Table 11-7 to 11-9 bytes:
//
//	config       SD (AID constant)                  privileges  associated SD
//	embedded     ISD = central SD                   9A 40 00    -   (SD, Card Lock, Card Terminate, CVM, AM)
//	uicc         ISD                                9E FE 80    -
//	             CentralSDAID                       80 40 00    ISD (AM)
//	             MNOSDAID + TelecomAppletAID        80 40 00    ISD (AM; applet 00 00 00)
//	embedded-3p  ISD (verifies tokens, receipts)    9E FE 80    -
//	             CentralSDAID, ThirdPartySDAID      80 40 00    ISD (AM)
//	             DMSPSDAID                          A0 00 00    central SD (Delegated Management)
//	             MandatedDAPSDAID                   C1 00 00    ISD (Mandated DAP Verification)
//	             CASDAID                            80 00 00    ISD
//	uicc-3p      as embedded-3p plus the MNO SD, with MDPHSDAID C1 20 80 (Mandated DAP,
//	             Token Verification, Receipt Generation) in place of MandatedDAPSDAID
//
// Pre-issued SP SDs (ManufactureSpec.PreIssuedSPDomains) sit under the
// central SD with 80 00 00, or C0 00 00 (DAP Verification) in embedded.
// CentralSD(cfg) returns the AID to address for the central TSM.
//
// # Keys
//
// Issuer SDs have an AES SCP03 key set, KVN 30 (KVNIssuer), key ids 1-3,
// kdf3-diversified from the issuer master key (DeriveSCP03Keys) over the SD's
// KDD: the card KDD (KDDFromCIN) for the ISD and the central SD, SDKDD for
// the others; the KDD comes back in INITIALIZE UPDATE. SDs with DAP, Token
// Verification or Receipt Generation also hold an AES-CMAC key (key id 1,
// KVN 73/74/75) diversified with DivDAP/DivToken/DivReceipt. Pre-issued SP
// SDs use their SP master key over the card KDD. SCP03 runs with i=70
// (pseudo-random challenge, R-MAC, R-ENC); SetSCPParameter changes it.
//
// # SD policies where GP leaves the choice to the SD
//
//   - A new SD (INSTALL from the SSD package) has no keys. While it is not
//     PERSONALIZED it receives keys through its associated SD: INSTALL [for
//     personalization] naming it, then PUT KEY (forwarded) or STORE DATA DGI
//     00B9 + 8113. It becomes PERSONALIZED on its first complete key set
//     (GPC 5.3.2.3 leaves the condition to the SD). Afterwards only its own
//     secure channel changes its keys.
//   - The generic application instance stores every STORE DATA block and
//     moves to the application-specific state 0F (LCAppPersonalized) on the
//     last block.
//   - Status words for privilege failures: 6985 (no AM/DM, no Card Lock),
//     6A88 for objects outside the requesting SD's sub-hierarchy, 6982 for a
//     missing or wrong DM token, DAP or KCV.
//
// Key values are never logged nor put into errors: errors returned by this
// package describe what is wrong, never with which key.
package card
