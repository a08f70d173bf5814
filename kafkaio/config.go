package kafkaio

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Config says how to reach a Kafka cluster. Start from DefaultConfig; the
// error messages of Validate name the command-line flags of the fields
// (--brokers, --tls-ca, --sasl-mechanism, ...), which is how users set them.
type Config struct {
	// Brokers are the bootstrap brokers, as HOST:PORT.
	Brokers []string
	// ClientID names this client in the broker's logs and quotas.
	ClientID string
	TLS      TLSConfig
	SASL     SASLConfig
	// DialTimeout bounds connecting to a broker, TLS and SASL included,
	// and Ping as a whole (0: 10s).
	DialTimeout time.Duration
	// MetadataTopics, when set, are the only topics whose metadata the
	// client's connections fetch and keep (nil: every topic of the
	// cluster, kafka-go's default), refreshed every few seconds. Every
	// topic the config is used with must be among them: the others are
	// unknown to it. The live service sets its own topics: on a broker
	// that held 310 topics, keeping the metadata of all of them (13.5 MB
	// of its heap with 267) made its catch-up collect garbage three times
	// as often and run at two thirds of the speed (bench/RESULTS.md).
	MetadataTopics []string
}

// TLSConfig enables TLS and names the files it needs.
type TLSConfig struct {
	Enable bool
	// CAFile is a PEM file of the certificate authorities that signed the
	// brokers' certificates (empty: the system's roots).
	CAFile string
	// CertFile and KeyFile are the client's PEM certificate and key, for
	// brokers that authenticate clients by certificate (mutual TLS).
	CertFile, KeyFile string
	// InsecureSkipVerify accepts any broker certificate: for tests only.
	InsecureSkipVerify bool
	// ServerName is the name to verify the broker certificates against
	// (empty: the host of each broker address).
	ServerName string
}

// SASLConfig selects SASL authentication.
type SASLConfig struct {
	// Mechanism is "" (no SASL), "PLAIN", "SCRAM-SHA-256" or
	// "SCRAM-SHA-512" (case does not matter).
	Mechanism          string
	Username, Password string
}

// The SASL mechanisms.
const (
	SASLPlain      = "PLAIN"
	SASLScram256   = "SCRAM-SHA-256"
	SASLScram512   = "SCRAM-SHA-512"
	saslMechanisms = "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
)

const defaultDialTimeout = 10 * time.Second

// DefaultConfig is a local broker without TLS or SASL.
func DefaultConfig() Config {
	return Config{
		Brokers:     []string{"127.0.0.1:9092"},
		ClientID:    "virality",
		DialTimeout: defaultDialTimeout,
	}
}

// Validate checks c, reading the TLS files but not connecting, and returns
// an error naming the flag to fix.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("--brokers: give at least one broker as HOST:PORT, such as 127.0.0.1:9092")
	}
	for _, b := range c.Brokers {
		if err := checkHostPort(b); err != nil {
			return fmt.Errorf("--brokers: %q %v", b, err)
		}
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("dial timeout %v: must not be negative", c.DialTimeout)
	}
	if err := c.TLS.validate(); err != nil {
		return err
	}
	return c.SASL.validate()
}

// checkHostPort reports what is wrong with a HOST:PORT broker address.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("is not HOST:PORT (such as 127.0.0.1:9092; several are separated by commas)")
	}
	if host == "" {
		return errors.New("has no host: want HOST:PORT, such as 127.0.0.1:9092")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("has no valid port: want HOST:PORT with a port from 1 to 65535")
	}
	return nil
}

func (t TLSConfig) validate() error {
	if !t.Enable {
		for _, f := range []struct{ flag, v string }{
			{"--tls-ca", t.CAFile}, {"--tls-cert", t.CertFile}, {"--tls-key", t.KeyFile},
			{"--tls-server-name", t.ServerName},
		} {
			if f.v != "" {
				return fmt.Errorf("%s is set but --tls is not: add --tls to connect with TLS (or drop %s)", f.flag, f.flag)
			}
		}
		if t.InsecureSkipVerify {
			return errors.New("--tls-insecure-skip-verify is set but --tls is not: add --tls to connect with TLS")
		}
		return nil
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("--tls-cert and --tls-key go together: give both (client certificate and its key) or neither")
	}
	_, err := t.config()
	return err
}

// config builds the crypto/tls configuration, reading the files.
func (t TLSConfig) config() (*tls.Config, error) {
	if !t.Enable {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // the user asked for it, for tests
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca %q: cannot read it: %v", t.CAFile, errors.Unwrap(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %q: no PEM certificate in it (want a file of -----BEGIN CERTIFICATE----- blocks)", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		for _, f := range []struct{ flag, path string }{{"--tls-cert", t.CertFile}, {"--tls-key", t.KeyFile}} {
			if _, err := os.Stat(f.path); err != nil {
				return nil, fmt.Errorf("%s %q: cannot read it: %v", f.flag, f.path, errors.Unwrap(err))
			}
		}
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert %q, --tls-key %q: not a certificate and its key: %v", t.CertFile, t.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// mechanism returns the canonical mechanism name ("" for none), or false
// when it is not one of ours.
func (s SASLConfig) mechanism() (string, bool) {
	switch m := strings.ToUpper(strings.TrimSpace(s.Mechanism)); m {
	case "", SASLPlain, SASLScram256, SASLScram512:
		return m, true
	}
	return "", false
}

func (s SASLConfig) validate() error {
	m, ok := s.mechanism()
	if !ok {
		return fmt.Errorf("--sasl-mechanism %q: choose %s (or leave it empty for no SASL)", s.Mechanism, saslMechanisms)
	}
	if m == "" {
		if s.Username != "" || s.Password != "" {
			return fmt.Errorf("--sasl-username or --sasl-password is set but --sasl-mechanism is not: choose %s", saslMechanisms)
		}
		return nil
	}
	if s.Username == "" {
		return fmt.Errorf("--sasl-username: required with --sasl-mechanism %s", m)
	}
	if s.Password == "" {
		return fmt.Errorf("--sasl-password (or VIRALITY_SASL_PASSWORD): required with --sasl-mechanism %s", m)
	}
	return nil
}

// sasl builds the kafka-go SASL mechanism (nil for none).
func (s SASLConfig) sasl() (sasl.Mechanism, error) {
	m, ok := s.mechanism()
	if !ok {
		return nil, s.validate()
	}
	switch m {
	case SASLPlain:
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case SASLScram256, SASLScram512:
		algo := scram.SHA256
		if m == SASLScram512 {
			algo = scram.SHA512
		}
		mech, err := scram.Mechanism(algo, s.Username, s.Password)
		if err != nil {
			// Only a username or password that SASLprep rejects.
			return nil, fmt.Errorf("--sasl-username/--sasl-password: not usable with %s: %v", m, err)
		}
		return mech, nil
	}
	return nil, nil
}

func (c Config) dialTimeout() time.Duration {
	if c.DialTimeout > 0 {
		return c.DialTimeout
	}
	return defaultDialTimeout
}

// security validates c and returns its TLS configuration and SASL
// mechanism (nil when not used).
func (c Config) security() (*tls.Config, sasl.Mechanism, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	tc, err := c.TLS.config()
	if err != nil {
		return nil, nil, err
	}
	mech, err := c.SASL.sasl()
	if err != nil {
		return nil, nil, err
	}
	return tc, mech, nil
}

// Transport returns a new kafka-go transport (connection pool) for c. Its
// owner calls CloseIdleConnections when done with it, which also stops its
// metadata poller.
func (c Config) Transport() (*kafka.Transport, error) {
	tc, mech, err := c.security()
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: c.dialTimeout(), KeepAlive: 30 * time.Second}
	return &kafka.Transport{
		Dial:           d.DialContext,
		DialTimeout:    c.dialTimeout(),
		ClientID:       c.ClientID,
		TLS:            tc,
		SASL:           mech,
		MetadataTopics: slices.Clone(c.MetadataTopics),
	}, nil
}

// Dialer returns a kafka-go dialer for c, for the APIs built on
// connections rather than on a Transport (kafka.ConsumerGroup).
func (c Config) Dialer() (*kafka.Dialer, error) {
	tc, mech, err := c.security()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{
		ClientID:      c.ClientID,
		Timeout:       c.dialTimeout(),
		DualStack:     true,
		KeepAlive:     30 * time.Second,
		TLS:           tc,
		SASLMechanism: mech,
	}, nil
}

// Client returns a kafka-go client of the cluster on a new Transport. The
// caller closes the transport when done:
//
//	cl.Transport.(*kafka.Transport).CloseIdleConnections()
func (c Config) Client() (*kafka.Client, error) {
	t, err := c.Transport()
	if err != nil {
		return nil, err
	}
	return &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: t}, nil
}

// addr is the brokers as one string for messages.
func (c Config) addr() string { return strings.Join(c.Brokers, ",") }

// shared is a Transport shared by the sinks and sources of equal Configs.
//
// kafka-go caches cluster metadata in the transport and refreshes it only
// every few seconds, so a topic created elsewhere, or a moved leader, can
// be unknown to it for a while; refresh drops the cached pools so that the
// next request fetches metadata anew.
type shared struct {
	key      string
	clientID string
	t        *kafka.Transport
	client   *kafka.Client
	refs     int // guarded by sharedMu

	mu          sync.Mutex
	lastRefresh time.Time
}

var (
	sharedMu   sync.Mutex
	sharedByCf = map[string]*shared{}
)

// acquire returns the shared transport for c, creating it on first use.
// Each acquire is paired with a release.
func acquire(c Config) (*shared, error) {
	key := fmt.Sprintf("%q|%q|%#v|%#v|%d|%#v", c.Brokers, c.ClientID, c.TLS, c.SASL, c.DialTimeout, c.MetadataTopics)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if s := sharedByCf[key]; s != nil {
		s.refs++
		return s, nil
	}
	t, err := c.Transport()
	if err != nil {
		return nil, err
	}
	s := &shared{key: key, clientID: c.ClientID, t: t, refs: 1, client: &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: t}}
	sharedByCf[key] = s
	return s, nil
}

// release gives back a transport from acquire, closing it with its last
// user.
func (s *shared) release() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if s.refs--; s.refs == 0 {
		delete(sharedByCf, s.key)
		s.t.CloseIdleConnections()
	}
}

// refresh makes the next request fetch fresh metadata, at most once a
// second whatever the number of callers.
func (s *shared) refresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.lastRefresh) < time.Second {
		return
	}
	s.lastRefresh = time.Now()
	s.t.CloseIdleConnections()
}
