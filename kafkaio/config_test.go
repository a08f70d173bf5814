package kafkaio

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	ca, _, _ := writeCert(t, dir)
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string // "" for valid
	}{
		{"default", func(c *Config) {}, ""},
		{"no brokers", func(c *Config) { c.Brokers = nil }, "--brokers: give at least one broker as HOST:PORT, such as 127.0.0.1:9092"},
		{"no port", func(c *Config) { c.Brokers = []string{"kafka"} }, `--brokers: "kafka" is not HOST:PORT (such as 127.0.0.1:9092; several are separated by commas)`},
		{"bad port", func(c *Config) { c.Brokers = []string{"kafka:0"} }, `--brokers: "kafka:0" has no valid port: want HOST:PORT with a port from 1 to 65535`},
		{"no host", func(c *Config) { c.Brokers = []string{":9092"} }, `--brokers: ":9092" has no host: want HOST:PORT, such as 127.0.0.1:9092`},
		{"ipv6", func(c *Config) { c.Brokers = []string{"[::1]:9092", "b:9093"} }, ""},
		{"sasl unknown", func(c *Config) { c.SASL = SASLConfig{Mechanism: "FOO", Username: "u", Password: "p"} },
			`--sasl-mechanism "FOO": choose PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (or leave it empty for no SASL)`},
		{"sasl lower case", func(c *Config) { c.SASL = SASLConfig{Mechanism: "scram-sha-256", Username: "u", Password: "p"} }, ""},
		{"sasl no user", func(c *Config) { c.SASL = SASLConfig{Mechanism: "PLAIN", Password: "p"} }, "--sasl-username: required with --sasl-mechanism PLAIN"},
		{"sasl no password", func(c *Config) { c.SASL = SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "u"} },
			"--sasl-password (or VIRALITY_SASL_PASSWORD): required with --sasl-mechanism SCRAM-SHA-512"},
		{"user without mechanism", func(c *Config) { c.SASL = SASLConfig{Username: "u", Password: "p"} },
			"--sasl-username or --sasl-password is set but --sasl-mechanism is not: choose PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
		{"tls file without tls", func(c *Config) { c.TLS.CAFile = ca }, "--tls-ca is set but --tls is not: add --tls to connect with TLS (or drop --tls-ca)"},
		{"tls ca", func(c *Config) { c.TLS = TLSConfig{Enable: true, CAFile: ca} }, ""},
		{"tls ca missing", func(c *Config) { c.TLS = TLSConfig{Enable: true, CAFile: "/nonexistent/ca.pem"} },
			`--tls-ca "/nonexistent/ca.pem": cannot read it: no such file or directory`},
		{"tls ca junk", func(c *Config) { c.TLS = TLSConfig{Enable: true, CAFile: junk} },
			fmt.Sprintf(`--tls-ca %q: no PEM certificate in it (want a file of -----BEGIN CERTIFICATE----- blocks)`, junk)},
		{"tls cert without key", func(c *Config) { c.TLS = TLSConfig{Enable: true, CertFile: ca} },
			"--tls-cert and --tls-key go together: give both (client certificate and its key) or neither"},
		{"tls key not a key", func(c *Config) { c.TLS = TLSConfig{Enable: true, CertFile: ca, KeyFile: junk} },
			fmt.Sprintf(`--tls-cert %q, --tls-key %q: not a certificate and its key: `, ca, junk)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %q, want none", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPingUnreachable(t *testing.T) {
	c := DefaultConfig()
	c.Brokers = []string{"127.0.0.1:1"}
	err := Ping(context.Background(), c)
	if err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "cannot reach Kafka at 127.0.0.1:1 (dial tcp 127.0.0.1:1: connect: connection refused): check --brokers and that the broker is running") {
		t.Errorf("error %q", msg)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q is not one line", msg)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v does not wrap ECONNREFUSED", err)
	}
}

func TestPingTimeout(t *testing.T) {
	// A listener that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	c := DefaultConfig()
	c.Brokers = []string{ln.Addr().String()}
	c.DialTimeout = 300 * time.Millisecond
	start := time.Now()
	err = Ping(context.Background(), c)
	if err == nil || !strings.HasPrefix(err.Error(), "no answer from Kafka at "+c.Brokers[0]+" within 300ms: check --brokers") {
		t.Errorf("error %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("ping took %v with a 300ms dial timeout", d)
	}
}

func TestExplain(t *testing.T) {
	c := DefaultConfig()
	c.SASL = SASLConfig{Mechanism: "SCRAM-SHA-256", Username: "svc", Password: "x"}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: bad password", kafka.SASLAuthenticationFailed),
			`Kafka at 127.0.0.1:9092 refused the credentials (SASL SCRAM-SHA-256, user "svc": [58] SASL Authentication Failed: `},
		{kafka.UnsupportedSASLMechanism, "Kafka at 127.0.0.1:9092 does not enable SASL SCRAM-SHA-256 on this listener ("},
		{&net.DNSError{Err: "no such host", Name: "kafka"}, "cannot reach Kafka at 127.0.0.1:9092 (lookup kafka: no such host): check the host names in --brokers"},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, "Kafka at 127.0.0.1:9092 does not speak TLS ("},
	} {
		if got := explain(c, tc.err).Error(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("explain(%v) = %q, want prefix %q", tc.err, got, tc.want)
		}
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, cert, _ := writeCert(t, dir)
	cl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testCtx(t, 20*time.Second)
	c := DefaultConfig()
	c.Brokers = cl.ListenAddrs()
	c.DialTimeout = 2 * time.Second

	c.TLS = TLSConfig{Enable: true, CAFile: caFile}
	if err := Ping(ctx, c); err != nil {
		t.Fatalf("ping with the CA: %v", err)
	}
	mustTopics(t, c, TopicSpec{Name: "t", Partitions: 1})
	s, err := NewSink(c, "t", SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Write(&processorMessage); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("write over TLS: %v", err)
	}

	c.TLS = TLSConfig{Enable: true}
	err = Ping(ctx, c)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "has a certificate this client does not trust") {
		t.Errorf("ping without the CA: %v", err)
	}
	c.TLS = TLSConfig{Enable: true, CAFile: caFile, ServerName: "other.example"}
	if err := Ping(ctx, c); err == nil || !strings.Contains(err.Error(), "check --tls-ca and --tls-server-name") {
		t.Errorf("ping with a wrong server name: %v", err)
	}
	c.TLS = TLSConfig{}
	err = Ping(ctx, c)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "check --tls") {
		t.Errorf("ping in plaintext: %v", err)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 to dir and
// returns the file name (it is its own CA) and the key pair.
func writeCert(t *testing.T, dir string) (caFile string, cert tls.Certificate, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kafkaio test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	caFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return caFile, cert, keyFile
}
