#!/usr/bin/python3
"""Secured GET STATUS on a simulated card through PC/SC (pyscard).

Opens an SCP03 session (security level 33: C-DEC, C-MAC, R-MAC, R-ENC) with
the ISD of the se-simulator's demo card in the reader "Virtual PCD 00 00",
runs secured GET STATUS commands and verifies every R-MAC, then checks that
the se-simulator's fleet committed exactly the APDUs sent.

The SCP03 host side is written here from the specification (GP Amd D;
shared/reference/gp-card.md section 3) on the `cryptography` package, so it is
independent of the Go code it tests. Before touching the card it replays the
published pySim AES-128 level-33 session and the GPPro KDF3 vectors, so a
failure later points at the card, not at this script.

The ISD's static keys are KDF3-diversified (gp-card.md 3.2) from the demo
issuer master key 404142...4F over the KDD the card returns in INITIALIZE
UPDATE: the public demo key, never a real one.

Run with Debian's /usr/bin/python3 (python3-pyscard, python3-cryptography).
Exit code 0 on success, 1 on any failure.
"""

import argparse
import json
import os
import sys
import urllib.request

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ISD_AID = bytes.fromhex("A000000151000000")
KVN_ISSUER = 0x30
DEMO_ISSUER_MASTER_KEY = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
DEMO_SP_SD_AIDS = [bytes.fromhex("A000000555AA01"), bytes.fromhex("A000000555AA02")]
DEFAULT_ATR = "3B8A0174736D6875622D73696DC4"


class Failure(Exception):
    """A check that did not hold."""


def check(cond, what):
    if not cond:
        raise Failure(what)


# --- primitives ---------------------------------------------------------------


def aes_cmac(key, data):
    c = cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def aes_ecb(key, block):
    e = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return e.update(block) + e.finalize()


def aes_cbc(key, iv, data, decrypt=False):
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    x = c.decryptor() if decrypt else c.encryptor()
    return x.update(data) + x.finalize()


def pad80(b):
    b = b + b"\x80"
    return b + bytes((-len(b)) % 16)


def unpad80(b):
    i = b.rstrip(b"\x00")
    check(i.endswith(b"\x80"), "R-ENC padding missing")
    return i[:-1]


def kdf3(master, k, kdd):
    """GPPro kdf3: CMAC(master, i || 00 00 00 || k || 00 || KDD), i = 1, 2 .."""
    out, i = b"", 1
    while len(out) < len(master):
        out += aes_cmac(master, bytes([i, 0, 0, 0, k, 0]) + kdd)
        i += 1
    return out[: len(master)]


def kcv_aes(key):
    return aes_ecb(key, b"\x01" * 16)[:3]


def scp03_kdf(key, constant, bits, context):
    """Amd D 4.1.5: NIST SP 800-108 counter mode, PRF AES-CMAC."""
    out, i = b"", 1
    while len(out) * 8 < bits:
        out += aes_cmac(key, bytes(11) + bytes([constant, 0]) + bits.to_bytes(2, "big") + bytes([i]) + context)
        i += 1
    return out[: bits // 8]


# --- SCP03 host -----------------------------------------------------------------


class SCP03Host:
    """The off-card side of one SCP03 session, security level 33."""

    def __init__(self, enc, mac, dek, host_challenge):
        self.static = (enc, mac, dek)
        self.host_challenge = host_challenge
        self.chain = bytes(16)
        self.counter = 0

    def initialize_update(self, kvn):
        return bytes([0x80, 0x50, kvn, 0x00, 0x08]) + self.host_challenge + b"\x00"

    def process_initialize_update(self, data, sd_aid=None):
        check(len(data) in (29, 32), f"INITIALIZE UPDATE response of {len(data)} bytes, want 29 or 32")
        self.kdd, self.kvn, scp, self.i = data[:10], data[10], data[11], data[12]
        card_challenge, card_cryptogram = data[13:21], data[21:29]
        check(scp == 0x03, f"SCP {scp:02X}, want 03")
        enc, mac, _ = self.static
        if self.i & 0x10:  # pseudo-random card challenge (Amd D 6.2.2.1)
            check(len(data) == 32, "pseudo-random challenge without sequence counter")
            self.seq = data[29:32]
            if sd_aid is not None:
                want = scp03_kdf(enc, 0x02, 64, self.seq + sd_aid)
                check(want == card_challenge, "card challenge is not the pseudo-random one (Key-ENC, counter, SD AID)")
        ctx = self.host_challenge + card_challenge
        bits = 8 * len(enc)
        self.s_enc = scp03_kdf(enc, 0x04, bits, ctx)
        self.s_mac = scp03_kdf(mac, 0x06, bits, ctx)
        self.s_rmac = scp03_kdf(mac, 0x07, bits, ctx)
        check(scp03_kdf(self.s_mac, 0x00, 64, ctx) == card_cryptogram, "card cryptogram does not verify")
        self.host_cryptogram = scp03_kdf(self.s_mac, 0x01, 64, ctx)

    def external_authenticate(self, level=0x33):
        self.level = level
        hdr = bytes([0x84, 0x82, level, 0x00, 0x10])
        full = aes_cmac(self.s_mac, bytes(16) + hdr + self.host_cryptogram)
        self.chain = full
        return hdr + self.host_cryptogram + full[:8]

    def wrap(self, plain):
        """C-DEC + C-MAC of a short command APDU (cases 1-4); Le kept, not MACed."""
        cla, ins, p1, p2 = plain[:4]
        rest = plain[4:]
        data, le = b"", b""
        if len(rest) == 1:
            le = rest
        elif len(rest) > 1:
            lc = rest[0]
            data = rest[1 : 1 + lc]
            check(len(rest) in (1 + lc, 2 + lc), "malformed plain APDU")
            le = rest[1 + lc :]
        self.counter += 1
        if data:
            icv = aes_ecb(self.s_enc, self.counter.to_bytes(16, "big"))
            data = aes_cbc(self.s_enc, icv, pad80(data))
        cla2 = (cla & 0xFC) | 0x04
        hdr = bytes([cla2, ins, p1, p2, len(data) + 8])
        full = aes_cmac(self.s_mac, self.chain + hdr + data)
        self.chain = full
        return hdr + data + full[:8] + le

    def unwrap(self, rdata, sw):
        """Verify the R-MAC and decrypt R-ENC data; error SWs carry neither."""
        if not (sw == 0x9000 or sw >> 8 in (0x62, 0x63)):
            return rdata
        check(len(rdata) >= 8, "response without R-MAC")
        body, rmac = rdata[:-8], rdata[-8:]
        want = aes_cmac(self.s_rmac, self.chain + body + sw.to_bytes(2, "big"))[:8]
        check(rmac == want, "R-MAC does not verify")
        if not body:
            return body
        icv = aes_ecb(self.s_enc, b"\x80" + self.counter.to_bytes(15, "big"))
        return unpad80(aes_cbc(self.s_enc, icv, body, decrypt=True))


# --- self-test on published vectors ------------------------------------------------


def self_test():
    """Replay the published pySim AES-128 level-33 session host-side and the
    GPPro KDF3 KCVs (shared/testdata/scp03-sessions.json, gp-card.md 3.2)."""
    master = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
    kdd = bytes.fromhex("00010203040506070809")
    kcvs = [kcv_aes(kdf3(master, k, kdd)).hex().upper() for k in (1, 2, 3)]
    check(kcvs == ["E79C05", "D1BD77", "3FDE8C"], f"KDF3 KCVs {kcvs}")

    h = SCP03Host(bytes.fromhex("000102030405060708090A0B0C0D0E0F"),
                  bytes.fromhex("101112131415161718191A1B1C1D1E1F"),
                  bytes.fromhex("202122232425262728292A2B2C2D2E2F"),
                  bytes.fromhex("FDF38259A1E0DE44"))
    check(h.initialize_update(0x30).hex().upper() == "8050300008FDF38259A1E0DE4400", "INITIALIZE UPDATE")
    h.process_initialize_update(
        bytes.fromhex("000000000000000000003003703B1ACA81E821F219081CDC01C26B372D000003"),
        bytes.fromhex("A0000005591010FFFFFFFF8900000100"))
    check(h.s_enc.hex().upper() == "BC5689F3A0B783A9ED6DA1C5C6BC1F99", "S-ENC")
    check(h.external_authenticate(0x33).hex().upper() == "84823300108C36F96BCC00724A4E13AD591D7DA3F0",
          "EXTERNAL AUTHENTICATE")
    for plain, wrapped in [
        ("80E2910006BF3E035C015A00", "84E2910018267A85DFE4A98FCA6FB0527E0DFECCE4914E40401433C87F00"),
    ]:
        check(h.wrap(bytes.fromhex(plain)).hex().upper() == wrapped, f"wrap {plain}")
    resp = h.unwrap(bytes.fromhex("F3BA2B1013AA6224F5E1C138D71805C569E5439B47576260B75FC021B25097CB2E68F8A0144975B9"),
                    0x9000)
    check(resp.hex().upper() == "BF3E125A1089882119900000000000000000000005", "unwrap")
    for plain, wrapped in [
        ("80F22002", "84F2200208AC6A59024BED84CC"),
        ("80CA006600", "84CA006608409912AD8FB7AED000"),
        ("80F220020A4F0212345C054F9F70C5", "84F22002185F3DAFC3AC14C381536A488BF44E06D056DF9D74DBD21E5A"),
        ("80F28002024F0000", "84F280021865165105BE3373347D0424D4400AF2AC393F569EC779389E00"),
    ]:
        check(h.wrap(bytes.fromhex(plain)).hex().upper() == wrapped, f"wrap {plain}")


# --- GET STATUS parsing ---------------------------------------------------------------


def parse_tlvs(b):
    """BER-TLV objects of b as (tag, value) pairs (tags up to 2 bytes)."""
    out, i = [], 0
    while i < len(b):
        tag = b[i]
        i += 1
        if tag & 0x1F == 0x1F:
            tag = (tag << 8) | b[i]
            i += 1
        n = b[i]
        i += 1
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(b[i : i + k], "big")
            i += k
        check(i + n <= len(b), "truncated TLV")
        out.append((tag, b[i : i + n]))
        i += n
    return out


def registry_entries(data):
    """GET STATUS P2=02 data: E3 templates with 4F (AID), 9F70 (life cycle), C5 (privileges)."""
    entries = []
    for tag, value in parse_tlvs(data):
        check(tag == 0xE3, f"GET STATUS entry with tag {tag:X}, want E3")
        fields = dict(parse_tlvs(value))
        entries.append((fields.get(0x4F, b""), fields.get(0x9F70, b""), fields.get(0xC5, b"")))
    return entries


# --- the card ----------------------------------------------------------------------------


def counters(http):
    with urllib.request.urlopen(f"http://{http}/counters", timeout=10) as r:
        return json.load(r)["apdusExecuted"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reader", default="Virtual PCD 00 00")
    ap.add_argument("--atr", default=DEFAULT_ATR, help="the ATR the card must present")
    ap.add_argument("--card-url", required=True,
                    help="host:port/v1/cards/<seId> of the se-simulator's HTTP API (fleet view of the card)")
    args = ap.parse_args()

    self_test()
    print("self-test: KDF3 vectors and the published pySim SCP03 level-33 session reproduce")

    from smartcard.System import readers
    from smartcard.CardConnection import CardConnection

    matches = [r for r in readers() if str(r) == args.reader]
    check(matches, f"reader {args.reader!r} not found; readers: {[str(r) for r in readers()]}")
    conn = matches[0].createConnection()
    conn.connect(CardConnection.T1_protocol)
    atr = bytes(conn.getATR()).hex().upper()
    check(atr == args.atr.upper(), f"ATR {atr}, want {args.atr}")
    print(f"connected to {args.reader} with T=1, ATR {atr}")

    before = counters(args.card_url)
    sent = 0

    def transmit(capdu):
        nonlocal sent
        data, sw1, sw2 = conn.transmit(list(capdu))
        sent += 1
        return bytes(data), (sw1 << 8) | sw2

    fci, sw = transmit(bytes.fromhex("00A4040008") + ISD_AID + b"\x00")
    check(sw == 0x9000 and fci[:1] == b"\x6F" and ISD_AID in fci, f"SELECT ISD: {fci.hex()} {sw:04X}")
    print(f"SELECT ISD: FCI {fci.hex().upper()} 9000")

    host = SCP03Host(None, None, None, os.urandom(8))
    resp, sw = transmit(host.initialize_update(KVN_ISSUER))
    check(sw == 0x9000, f"INITIALIZE UPDATE: SW {sw:04X}")
    kdd = resp[:10]
    host.static = tuple(kdf3(DEMO_ISSUER_MASTER_KEY, k, kdd) for k in (1, 2, 3))
    host.process_initialize_update(resp, ISD_AID)
    print(f"INITIALIZE UPDATE: KVN {host.kvn:02X}, i={host.i:02X}, sequence counter {host.seq.hex().upper()}, "
          "card cryptogram and pseudo-random challenge verified")
    _, sw = transmit(host.external_authenticate(0x33))
    check(sw == 0x9000, f"EXTERNAL AUTHENTICATE: SW {sw:04X}")
    print("EXTERNAL AUTHENTICATE: level 33 (C-DEC, C-MAC, R-MAC, R-ENC) 9000")

    for name, plain, want in [
        ("ISD", bytes.fromhex("80F28002024F0000"), [ISD_AID]),
        ("applications and SDs", bytes.fromhex("80F24002024F0000"), DEMO_SP_SD_AIDS),
    ]:
        rdata, sw = transmit(host.wrap(plain))
        check(sw in (0x9000, 0x6310), f"secured GET STATUS ({name}): SW {sw:04X}")
        entries = registry_entries(host.unwrap(rdata, sw))
        aids = [a for a, _, _ in entries]
        for w in want:
            check(w in aids, f"GET STATUS ({name}) lacks {w.hex().upper()}")
        print(f"secured GET STATUS ({name}): R-MAC verified, SW {sw:04X}, {len(entries)} entries:")
        for aid, lc, priv in entries:
            print(f"    {aid.hex().upper():34s} life cycle {lc.hex().upper():2s}  privileges {priv.hex().upper()}")

    # A forged C-MAC: the card answers 6982 and aborts the secure channel, so
    # the next, correct command is refused too (GPC 10.2.3, Amd D 5.6).
    forged = bytearray(host.wrap(bytes.fromhex("80F28002024F0000")))
    forged[-2] ^= 0x01
    _, sw = transmit(bytes(forged))
    check(sw == 0x6982, f"forged C-MAC: SW {sw:04X}, want 6982")
    _, sw = transmit(host.wrap(bytes.fromhex("80F28002024F0000")))
    check(sw != 0x9000, "secure channel still open after a MAC error")
    print(f"forged C-MAC: 6982, then the channel is closed ({sw:04X})")

    after = counters(args.card_url)
    check(after - before == sent, f"the fleet committed {after - before} APDUs, {sent} were sent")
    print(f"fleet: {sent} APDUs sent through PC/SC, {after - before} committed to the card's record")
    conn.disconnect()


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    print("PASS: secured GET STATUS through PC/SC")
