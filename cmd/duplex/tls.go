package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"
)

// tlsOptions say how the server speaks: HTTPS (HTTP/2 and HTTP/1.1 chosen
// by ALPN), or cleartext HTTP/1.1, with cleartext HTTP/2 (h2c) besides when
// h2c is set.
type tlsOptions struct {
	enabled           bool
	certFile, keyFile string // both or neither; neither: a development certificate
	h2c               bool
}

// devCertLifetime is how long the development certificate made at start is
// valid.
const devCertLifetime = 30 * 24 * time.Hour

// addTLSFlags defines -tls, -cert, -key and -h2c on fs. The function it
// returns reads them, and their environment twins, after fs.Parse.
func addTLSFlags(fs *flag.FlagSet, getenv func(string) string) func() (tlsOptions, error) {
	on := fs.Bool("tls", false,
		"serve HTTPS, HTTP/2 and HTTP/1.1 chosen by ALPN; without -cert and -key, with a self-signed development\n"+
			"certificate for localhost made at start, whose SHA-256 fingerprint is logged (env DUPLEX_TLS)")
	cert := fs.String("cert", getenv("DUPLEX_CERT"), "PEM `file` of the TLS certificate chain; implies -tls (env DUPLEX_CERT)")
	key := fs.String("key", getenv("DUPLEX_KEY"), "PEM `file` of the certificate's private key (env DUPLEX_KEY)")
	h2c := fs.Bool("h2c", false,
		"also speak cleartext HTTP/2 (h2c, prior knowledge), for a proxy that talks HTTP/2 to its backends;\n"+
			"not with -tls (env DUPLEX_H2C)")
	return func() (tlsOptions, error) {
		if err := boolEnv(fs, getenv, "tls", "DUPLEX_TLS", on); err != nil {
			return tlsOptions{}, err
		}
		if err := boolEnv(fs, getenv, "h2c", "DUPLEX_H2C", h2c); err != nil {
			return tlsOptions{}, err
		}
		o := tlsOptions{enabled: *on, certFile: *cert, keyFile: *key, h2c: *h2c}
		if (o.certFile == "") != (o.keyFile == "") {
			return tlsOptions{}, errors.New("-cert and -key go together: give both, or neither for a development certificate")
		}
		if o.certFile != "" {
			o.enabled = true
		}
		if o.enabled && o.h2c {
			return tlsOptions{}, errors.New("-h2c is cleartext HTTP/2 and does not go with -tls (over TLS, HTTP/2 is on anyway)")
		}
		return o, nil
	}
}

// setupTLS prepares srv for HTTPS or h2c as o says, logs the certificate,
// and returns the URL scheme.
func setupTLS(srv *http.Server, o tlsOptions, logger *slog.Logger) (string, error) {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	if o.enabled || o.h2c {
		// Go's HTTP/2 clients (websocket.Dial among them) hold, per stream
		// with a body of unknown length, a write buffer as big as the frames
		// the server accepts: 512 KiB with net/http's default of 1 MiB. A
		// WebSocket keeps its stream open, so accept HTTP/2's default 16 KiB.
		srv.HTTP2 = &http.HTTP2Config{MaxReadFrameSize: 16 << 10}
	}
	switch {
	case o.enabled:
		var cert tls.Certificate
		var err error
		if o.certFile != "" {
			cert, err = tls.LoadX509KeyPair(o.certFile, o.keyFile)
			if err != nil {
				return "", fmt.Errorf("loading the TLS certificate: %w", err)
			}
			leaf := cert.Leaf
			logger.Info("tls certificate", "file", o.certFile, "subject", leaf.Subject.String(),
				"dns", leaf.DNSNames, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
				"sha256", fingerprint(leaf.Raw))
		} else {
			cert, err = devCertificate(time.Now())
			if err != nil {
				return "", fmt.Errorf("making a development certificate: %w", err)
			}
			leaf := cert.Leaf
			logger.Info("tls: self-signed development certificate; browsers warn until you accept it",
				"dns", leaf.DNSNames, "ip", leaf.IPAddresses, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
				"sha256", fingerprint(leaf.Raw), "spki_sha256", spkiHash(leaf))
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		p.SetHTTP2(true)
		srv.Protocols = p
		return "https", nil
	case o.h2c:
		p.SetUnencryptedHTTP2(true)
		srv.Protocols = p
	}
	return "http", nil
}

// serve is srv.Serve, or srv.ServeTLS when setupTLS set a certificate
// (ServeTLS adds h2 and http/1.1 to the config's ALPN protocols).
func serve(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}

// devCertificate makes a self-signed certificate for localhost, 127.0.0.1
// and ::1, as Falcon's development server does for https://localhost:9292.
func devCertificate(now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"Duplex development"}},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(devCertLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// fingerprint is the SHA-256 of a certificate in the form browsers and
// openssl x509 -fingerprint -sha256 show: colon-separated hex pairs.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// spkiHash is what Chromium's --ignore-certificate-errors-spki-list takes:
// the base64 SHA-256 of the certificate's public key.
func spkiHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
