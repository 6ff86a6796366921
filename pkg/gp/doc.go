// Package gp groups the GlobalPlatform building blocks shared by the tsmhub
// services: the ISO 7816-4 APDU codec (apdu), the BER-TLV codec (tlv), the
// symmetric primitives (gpcrypto), the SCP02 and SCP03 secure channels
// (scp02, scp03, host and card side) and the host-side command builders
// (command).
//
// The byte-level rules come from the GlobalPlatform Card Specification
// v2.3.1 and its Amendment D (SCP03); the project notes in
// shared/reference/gp-card.md cite the relevant sections and tables.
package gp
