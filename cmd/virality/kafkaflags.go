package main

import (
	"flag"
	"strings"

	"github.com/viralityhq/virality/kafkaio"
)

// kafkaFlags are the connection flags of every command that talks to
// Kafka. config turns them into a validated kafkaio.Config.
type kafkaFlags struct {
	brokers string // comma-separated HOST:PORTs, as given
	cfg     kafkaio.Config
}

// addKafkaFlags defines --brokers, --client-id, the --tls-* and the
// --sasl-* flags on fs.
func addKafkaFlags(fs *flag.FlagSet) *kafkaFlags {
	d := kafkaio.DefaultConfig()
	k := &kafkaFlags{cfg: d}
	fs.StringVar(&k.brokers, "brokers", strings.Join(d.Brokers, ","), "Kafka bootstrap brokers: comma-separated `HOST:PORT`s")
	fs.StringVar(&k.cfg.ClientID, "client-id", d.ClientID, "client `ID` the brokers see (in their logs, metrics and quotas)")
	fs.BoolVar(&k.cfg.TLS.Enable, "tls", false, "connect to the brokers with TLS")
	fs.StringVar(&k.cfg.TLS.CAFile, "tls-ca", "", "PEM `FILE` of the certificate authorities that signed the brokers' certificates\n(empty: the system's); needs --tls")
	fs.StringVar(&k.cfg.TLS.CertFile, "tls-cert", "", "PEM client certificate `FILE`, for brokers that authenticate clients by certificate\n(mutual TLS; with --tls-key)")
	fs.StringVar(&k.cfg.TLS.KeyFile, "tls-key", "", "PEM `FILE` of the private key of --tls-cert")
	fs.BoolVar(&k.cfg.TLS.InsecureSkipVerify, "tls-insecure-skip-verify", false, "accept any broker certificate: for tests only, as anyone on the path can then read\nand change the traffic")
	fs.StringVar(&k.cfg.TLS.ServerName, "tls-server-name", "", "`NAME` the broker certificates must be valid for (empty: the host of each broker)")
	fs.StringVar(&k.cfg.SASL.Mechanism, "sasl-mechanism", "", "SASL `MECHANISM`: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL); PLAIN sends\nthe password as it is, so use it with --tls")
	fs.StringVar(&k.cfg.SASL.Username, "sasl-username", "", "SASL user `NAME`")
	fs.StringVar(&k.cfg.SASL.Password, "sasl-password", "", "SASL `PASSWORD`; better set VIRALITY_SASL_PASSWORD, which other users of the machine\ncannot see in the process list")
	return k
}

// config returns the Kafka configuration of the flags, or a usage error
// naming the flag to fix.
func (k *kafkaFlags) config() (kafkaio.Config, error) {
	c := k.cfg
	c.Brokers = nil
	for _, b := range strings.Split(k.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Brokers = append(c.Brokers, b)
		}
	}
	if err := c.Validate(); err != nil {
		return c, usageError{err.Error()}
	}
	return c, nil
}
