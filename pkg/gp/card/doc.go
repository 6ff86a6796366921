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
// Key values are never logged nor put into errors: errors returned by this
// package describe what is wrong, never with which key.
package card
