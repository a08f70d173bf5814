package kafkaio

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// Ping fetches the cluster's metadata from the brokers of c, then checks
// that every broker the cluster advertises can be dialed from here (a
// broker that advertises an address only reachable inside its own network
// is the classic first-run failure). It gives up after c's dial timeout.
//
// Its error is one line that says what to fix, for example:
//
//	cannot reach Kafka at 127.0.0.1:9999 (dial tcp 127.0.0.1:9999: connect: connection refused): check --brokers and that the broker is running
func Ping(ctx context.Context, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	cl, err := c.Client()
	if err != nil {
		return err
	}
	// The brokers, and no topic's metadata (kafka-go's default, nil, asks
	// for every topic of the cluster): the live service pings every
	// second, and on a broker that held 267 topics its catch-up collected
	// garbage three times as often (bench/RESULTS.md).
	t := cl.Transport.(*kafka.Transport)
	t.MetadataTopics = []string{}
	defer t.CloseIdleConnections()
	tctx, cancel := context.WithTimeout(ctx, c.dialTimeout())
	defer cancel()
	md, err := cl.Metadata(tctx, &kafka.MetadataRequest{})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return explain(c, err)
	}
	d := net.Dialer{Timeout: c.dialTimeout()}
	for i, b := range md.Brokers {
		if i == 16 {
			break // enough to catch a misconfigured listener
		}
		addr := net.JoinHostPort(b.Host, strconv.Itoa(b.Port))
		conn, err := d.DialContext(tctx, "tcp", addr)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &hintError{err: err, msg: fmt.Sprintf("Kafka at %s answered, but it advertises broker %d as %s, which cannot be reached from here (%s): "+
				"fix the broker's advertised.listeners, or make that address reachable", c.addr(), b.ID, addr, oneLine(err))}
		}
		conn.Close()
	}
	return nil
}

// hintError is an error whose message says what to fix; it wraps the
// cause for errors.Is and errors.As.
type hintError struct {
	msg string
	err error
}

func (e *hintError) Error() string { return e.msg }
func (e *hintError) Unwrap() error { return e.err }

// explain turns a failure to talk to the cluster into a hintError naming
// the flags to check.
func explain(c Config, err error) error {
	addr := c.addr()
	cause := oneLine(err)
	mech, _ := c.SASL.mechanism()
	var (
		kerr      kafka.Error
		recHdr    tls.RecordHeaderError
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		alert     tls.AlertError
		dnsErr    *net.DNSError
		opErr     *net.OpError
		netErr    net.Error
		msg       string
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		msg = fmt.Sprintf("no answer from Kafka at %s within %v: check --brokers, that the broker is running and reachable from here, and --tls (a TLS listener does not answer plaintext)", addr, c.dialTimeout())
	case errors.As(err, &recHdr):
		msg = fmt.Sprintf("Kafka at %s does not speak TLS (%s): drop --tls, or use the port of the broker's TLS listener", addr, cause)
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		msg = fmt.Sprintf("Kafka at %s has a certificate this client does not trust (%s): check --tls-ca and --tls-server-name", addr, cause)
	case errors.As(err, &alert):
		msg = fmt.Sprintf("Kafka at %s rejected the TLS handshake (%s): check --tls-cert and --tls-key (the broker may require a client certificate) and --tls-ca", addr, cause)
	case errors.As(err, &kerr):
		switch kerr {
		case kafka.SASLAuthenticationFailed, kafka.IllegalSASLState:
			msg = fmt.Sprintf("Kafka at %s refused the credentials (SASL %s, user %q: %s): check --sasl-username/--sasl-password and --sasl-mechanism", addr, mech, c.SASL.Username, cause)
		case kafka.UnsupportedSASLMechanism:
			msg = fmt.Sprintf("Kafka at %s does not enable SASL %s on this listener (%s): choose a mechanism it enables with --sasl-mechanism", addr, mech, cause)
		case kafka.ClusterAuthorizationFailed, kafka.TopicAuthorizationFailed, kafka.GroupAuthorizationFailed:
			msg = fmt.Sprintf("Kafka at %s denied access (%s): grant the user the rights it needs", addr, cause)
		default:
			msg = fmt.Sprintf("Kafka at %s answered with an error: %s", addr, cause)
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		if mech != "" {
			// Some brokers answer bad credentials by closing the connection.
			msg = fmt.Sprintf("Kafka at %s closed the connection (%s): check --sasl-username/--sasl-password and --sasl-mechanism (SASL %s, user %q), and --tls (the listener may expect TLS, or not)", addr, cause, mech, c.SASL.Username)
		} else {
			msg = fmt.Sprintf("Kafka at %s closed the connection (%s): check --tls (the listener may expect TLS, or not) and --sasl-mechanism (it may require SASL)", addr, cause)
		}
	case errors.As(err, &dnsErr):
		msg = fmt.Sprintf("cannot reach Kafka at %s (%s): check the host names in --brokers", addr, cause)
	case errors.As(err, &opErr):
		msg = fmt.Sprintf("cannot reach Kafka at %s (%s): check --brokers and that the broker is running", addr, cause)
	default:
		msg = fmt.Sprintf("cannot talk to Kafka at %s: %s", addr, cause)
	}
	return &hintError{msg: msg, err: err}
}

// oneLine is err's message without kafka-go's "kafka.(*Client).Metadata: "
// prefixes and on one line.
func oneLine(err error) string {
	s := err.Error()
	for strings.HasPrefix(s, "kafka.(") {
		i := strings.Index(s, ": ")
		if i < 0 {
			break
		}
		s = s[i+2:]
	}
	return strings.Join(strings.Fields(s), " ")
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
