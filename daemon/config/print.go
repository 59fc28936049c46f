package config

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// WriteYAML writes the effective configuration, defaults filled in, as
// YAML that Load reads back to the same Config. Secrets live in files
// and only their paths appear; a URL's password, were one there, is hidden.
func (c *Config) WriteYAML(w io.Writer) error {
	dur := func(d time.Duration) string {
		if d == 0 {
			return "0"
		}
		return d.String()
	}
	sensors := make([]*yaml.Node, len(c.Sensors))
	for i, s := range c.Sensors {
		sensors[i] = s.Node
	}
	// yaml.v3 writes map keys sorted; a node keeps the order of the file.
	doc := ordered(
		"device", c.Device,
		"spool", ordered(
			"path", c.Spool.Path,
			"commit_interval", dur(c.Spool.CommitInterval),
			"max_bytes", c.Spool.MaxBytes.String(),
			"max_age", dur(c.Spool.MaxAge),
			"policy", c.Spool.Policy,
		),
		"uplink", ordered(
			"kind", c.Uplink.Kind,
			"http", ordered(
				"url", RedactURL(c.Uplink.HTTP.URL),
				"token_file", c.Uplink.HTTP.TokenFile,
				"ca_file", c.Uplink.HTTP.CAFile,
				"client_cert", c.Uplink.HTTP.ClientCert,
				"client_key", c.Uplink.HTTP.ClientKey,
			),
			"mqtt", ordered(
				"broker", RedactURL(c.Uplink.MQTT.Broker),
				"username", c.Uplink.MQTT.Username,
				"password_file", c.Uplink.MQTT.PasswordFile,
				"prefix", c.Uplink.MQTT.Prefix,
				"confirm", c.Uplink.MQTT.Confirm,
				"receipt_timeout", dur(c.Uplink.MQTT.ReceiptTimeout),
				"ca_file", c.Uplink.MQTT.CAFile,
			),
			"batch", ordered(
				"max_readings", c.Uplink.Batch.MaxReadings,
				"max_bytes", c.Uplink.Batch.MaxBytes.String(),
				"in_flight", c.Uplink.Batch.InFlight,
			),
			"rate_limit", c.Uplink.RateLimit,
			"heartbeat", dur(c.Uplink.Heartbeat),
		),
		"sensors", sensors,
		"status", ordered("socket", c.Status.Socket),
		"log", ordered("level", c.Log.Level),
	)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	return enc.Close()
}

// ordered builds a mapping node from key, value pairs, keeping their order.
func ordered(pairs ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(pairs); i += 2 {
		var v yaml.Node
		switch x := pairs[i+1].(type) {
		case *yaml.Node:
			v = *x
		case string:
			v = yaml.Node{Kind: yaml.ScalarNode, Value: x, Tag: "!!str"}
			if x == "0" {
				v.Tag = "!!int"
			}
		case int:
			v = yaml.Node{Kind: yaml.ScalarNode, Value: strconv.Itoa(x), Tag: "!!int"}
		case float64:
			v = yaml.Node{Kind: yaml.ScalarNode, Value: strconv.FormatFloat(x, 'f', -1, 64)}
		default:
			if err := v.Encode(x); err != nil {
				panic(fmt.Sprintf("config field %v: %v", pairs[i], err))
			}
		}
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: pairs[i].(string)}, &v)
	}
	return n
}
