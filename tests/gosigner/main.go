// Command gosigner signs the way rkt signs: golang.org/x/crypto/openpgp, ArmoredDetachSign.
//
//	gosigner gen NAME BITS           armored secret key made by openpgp.NewEntity (RSA, BITS)
//	gosigner sign KEYRING DATA HASH  armored detached signature over DATA (HASH: sha256 or sha1)
//
// Built by tests/_gosigner.py with Debian's golang-go and golang-golang-x-crypto-dev, offline.
package main

import (
	"bytes"
	"crypto"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/crypto/openpgp"
	"golang.org/x/crypto/openpgp/armor"
	"golang.org/x/crypto/openpgp/packet"
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gosigner:", err)
	os.Exit(1)
}

func gen(name string, bits int) {
	config := &packet.Config{RSABits: bits, DefaultHash: crypto.SHA256}
	entity, err := openpgp.NewEntity(name, "", name+"@example.com", config)
	if err != nil {
		fail(err)
	}
	w, err := armor.Encode(os.Stdout, openpgp.PrivateKeyType, nil)
	if err != nil {
		fail(err)
	}
	if err := entity.SerializePrivate(w, config); err != nil {
		fail(err)
	}
	if err := w.Close(); err != nil {
		fail(err)
	}
}

func sign(keyring, data, hash string) {
	raw, err := os.ReadFile(keyring)
	if err != nil {
		fail(err)
	}
	ring, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(raw))
	if err != nil {
		ring, err = openpgp.ReadKeyRing(bytes.NewReader(raw))
	}
	if err != nil {
		fail(err)
	}
	in, err := os.Open(data)
	if err != nil {
		fail(err)
	}
	defer in.Close()
	config := &packet.Config{DefaultHash: crypto.SHA256}
	if hash == "sha1" {
		config.DefaultHash = crypto.SHA1
	}
	if err := openpgp.ArmoredDetachSign(os.Stdout, ring[0], in, config); err != nil {
		fail(err)
	}
}

func main() {
	if len(os.Args) == 4 && os.Args[1] == "gen" {
		bits, err := strconv.Atoi(os.Args[3])
		if err != nil {
			fail(err)
		}
		gen(os.Args[2], bits)
		return
	}
	if len(os.Args) == 5 && os.Args[1] == "sign" {
		sign(os.Args[2], os.Args[3], os.Args[4])
		return
	}
	fail(fmt.Errorf("usage: gosigner gen NAME BITS | gosigner sign KEYRING DATA sha256|sha1"))
}
