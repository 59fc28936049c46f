// Package config loads the edge daemon's configuration file
// (/etc/outpost/outpost.yaml): strict YAML, every key checked, every
// problem of the file reported at once with its line and key path. The
// sensors list is decoded by the sampler, which knows each driver's keys;
// WriteYAML prints the effective configuration back for `outpost config
// check`.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outpost-iot/outpost/daemon/sampler"
	"github.com/outpost-iot/outpost/internal/reading"
)

// DefaultPath is where the package installs the configuration.
const DefaultPath = "/etc/outpost/outpost.yaml"

// Config is the edge daemon's configuration (/etc/outpost/outpost.yaml).
type Config struct {
	Device  string // default: the host name
	Spool   Spool
	Uplink  Uplink
	Sensors []Sensor
	Status  Status
	Log     Log
}

// Spool says where and how readings are kept until delivered.
type Spool struct {
	Path           string
	CommitInterval time.Duration // 0 = commit every reading
	MaxBytes       reading.Size
	MaxAge         time.Duration // 0 = no age cap
	Policy         string        // drop_oldest or reject_new
}

// Uplink says how readings leave the device.
type Uplink struct {
	Kind      string // http or mqtt
	HTTP      HTTP
	MQTT      MQTT
	Batch     Batch
	RateLimit float64 // readings/s while draining a backlog; 0 = none
	Heartbeat time.Duration
}

// HTTP is the HTTP uplink's: the receiver's base URL and credentials.
type HTTP struct {
	URL        string
	TokenFile  string
	CAFile     string
	ClientCert string
	ClientKey  string
}

// MQTT is the MQTT uplink's.
type MQTT struct {
	Broker         string
	Username       string
	PasswordFile   string
	Prefix         string
	Confirm        string // receiver or broker
	ReceiptTimeout time.Duration
	CAFile         string
}

// Batch bounds what one send carries and how many are in flight.
type Batch struct {
	MaxReadings int
	MaxBytes    reading.Size
	InFlight    int
}

// Sensor is one entry of the sensors list: its YAML node (printed
// back by config check) and what the sampler decoded from it, each driver
// checking its own keys with their lines.
type Sensor struct {
	Index int
	Name  string
	Node  *yaml.Node
	Spec  sampler.SensorSpec
}

// Status is the local status API's.
type Status struct {
	Socket string
}

// Log is the logger's.
type Log struct {
	Level string // debug, info, warn or error
}

// Defaults returns the configuration used for every key the file leaves
// out.
func Defaults() Config {
	host, _ := os.Hostname()
	return Config{
		Device: host,
		Spool: Spool{
			Path:           "/var/lib/outpost/spool.db",
			CommitInterval: time.Second,
			MaxBytes:       512 * reading.MiB,
			Policy:         "drop_oldest",
		},
		Uplink: Uplink{
			Kind: "http",
			MQTT: MQTT{
				Prefix:         "outpost",
				Confirm:        "receiver",
				ReceiptTimeout: 60 * time.Second,
			},
			Batch:     Batch{MaxReadings: 500, MaxBytes: 256 * reading.KiB, InFlight: 4},
			Heartbeat: 60 * time.Second,
		},
		Status: Status{Socket: "/run/outpost/outpost.sock"},
		Log:    Log{Level: "info"},
	}
}

// Load reads and checks the configuration file at path. The error
// lists every problem found, each naming the line and the key.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load on the bytes of a file; name is used in errors.
func Parse(name string, data []byte) (*Config, error) {
	cfg := Defaults()
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, fmt.Errorf("%s: holds more than one YAML document", name)
	}
	d := &nodeDecoder{name: name}
	if doc.Kind != 0 {
		root := resolve(&doc)
		d.fields(root, "", map[string]func(string, *yaml.Node){
			"device":  d.str(&cfg.Device),
			"spool":   func(k string, v *yaml.Node) { d.spool(k, v, &cfg.Spool) },
			"uplink":  func(k string, v *yaml.Node) { d.uplink(k, v, &cfg.Uplink) },
			"sensors": func(k string, v *yaml.Node) { cfg.Sensors = d.sensors(k, v) },
			"status": func(k string, v *yaml.Node) {
				d.fields(v, k, map[string]func(string, *yaml.Node){"socket": d.str(&cfg.Status.Socket)})
			},
			"log": func(k string, v *yaml.Node) {
				d.fields(v, k, map[string]func(string, *yaml.Node){
					"level": d.oneOf(&cfg.Log.Level, "debug", "info", "warn", "error"),
				})
			},
		})
		cfg.check(d, root)
	}
	if len(d.errs) > 0 {
		return nil, d.err()
	}
	return &cfg, nil
}

func (d *nodeDecoder) spool(path string, n *yaml.Node, s *Spool) {
	d.fields(n, path, map[string]func(string, *yaml.Node){
		"path":            d.str(&s.Path),
		"commit_interval": d.duration(&s.CommitInterval),
		"max_bytes":       d.size(&s.MaxBytes),
		"max_age":         d.duration(&s.MaxAge),
		"policy":          d.oneOf(&s.Policy, "drop_oldest", "reject_new"),
	})
}

func (d *nodeDecoder) uplink(path string, n *yaml.Node, u *Uplink) {
	d.fields(n, path, map[string]func(string, *yaml.Node){
		"kind": d.oneOf(&u.Kind, "http", "mqtt"),
		"http": func(k string, v *yaml.Node) {
			d.fields(v, k, map[string]func(string, *yaml.Node){
				"url":         d.url(&u.HTTP.URL, "http", "https"),
				"token_file":  d.secretFile(&u.HTTP.TokenFile),
				"ca_file":     d.file(&u.HTTP.CAFile),
				"client_cert": d.file(&u.HTTP.ClientCert),
				"client_key":  d.secretFile(&u.HTTP.ClientKey),
			})
		},
		"mqtt": func(k string, v *yaml.Node) {
			d.fields(v, k, map[string]func(string, *yaml.Node){
				"broker":          d.url(&u.MQTT.Broker, "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"),
				"username":        d.str(&u.MQTT.Username),
				"password_file":   d.secretFile(&u.MQTT.PasswordFile),
				"prefix":          d.str(&u.MQTT.Prefix),
				"confirm":         d.oneOf(&u.MQTT.Confirm, "receiver", "broker"),
				"receipt_timeout": d.duration(&u.MQTT.ReceiptTimeout),
				"ca_file":         d.file(&u.MQTT.CAFile),
			})
		},
		"batch": func(k string, v *yaml.Node) {
			d.fields(v, k, map[string]func(string, *yaml.Node){
				"max_readings": d.integer(&u.Batch.MaxReadings, 1, 100_000),
				"max_bytes":    d.size(&u.Batch.MaxBytes),
				"in_flight":    d.integer(&u.Batch.InFlight, 1, 64),
			})
		},
		"rate_limit": d.number(&u.RateLimit, 0),
		"heartbeat":  d.duration(&u.Heartbeat),
	})
}

// sensors decodes each entry through the sampler (which knows every
// driver's keys) and checks what spans entries: no two share a name.
func (d *nodeDecoder) sensors(path string, n *yaml.Node) []Sensor {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "must be a list of sensors")
		return nil
	}
	var blocks []Sensor
	names := map[string]int{}
	for i, item := range n.Content {
		item = resolve(item)
		key := fmt.Sprintf("%s[%d]", path, i)
		if item.Kind != yaml.MappingNode {
			d.errorf(item, key, "must be a mapping such as {name: demo, driver: sim, interval: 1s}")
			continue
		}
		spec, err := sampler.DecodeSensor(i, item)
		if err != nil {
			for _, msg := range strings.Split(err.Error(), "\n") {
				d.errs = append(d.errs, lineError{item.Line, errors.New(d.prefix() + msg)})
			}
			continue
		}
		b := Sensor{Index: i, Name: spec.Name, Node: item, Spec: spec}
		if prev, dup := names[b.Name]; dup {
			d.errorf(item, key+".name", "%q is already the name of sensors[%d]", b.Name, prev)
		} else {
			names[b.Name] = i
		}
		blocks = append(blocks, b)
	}
	return blocks
}

// check validates what holds across keys, after decoding.
func (c *Config) check(d *nodeDecoder, root *yaml.Node) {
	at := func(path ...string) *yaml.Node { return find(root, path...) }
	if err := reading.ValidateDevice(c.Device); err != nil {
		d.errorf(at("device"), "device", "%q: %v", c.Device, err)
	}
	if c.Spool.Path == "" {
		d.errorf(at("spool", "path"), "spool.path", "must not be empty")
	}
	if c.Spool.MaxBytes < reading.MiB {
		d.errorf(at("spool", "max_bytes"), "spool.max_bytes", "%s is below the minimum of 1MiB", c.Spool.MaxBytes)
	}
	if c.Uplink.Batch.MaxBytes < 4*reading.KiB {
		d.errorf(at("uplink", "batch", "max_bytes"), "uplink.batch.max_bytes", "%s is below the minimum of 4KiB", c.Uplink.Batch.MaxBytes)
	}
	if c.Uplink.Heartbeat < time.Second {
		d.errorf(at("uplink", "heartbeat"), "uplink.heartbeat", "%s is below the minimum of 1s", c.Uplink.Heartbeat)
	}
	switch c.Uplink.Kind {
	case "http":
		if (c.Uplink.HTTP.ClientCert == "") != (c.Uplink.HTTP.ClientKey == "") {
			d.errorf(at("uplink", "http"), "uplink.http", "client_cert and client_key go together")
		}
	case "mqtt":
		if p := c.Uplink.MQTT.Prefix; p == "" || strings.ContainsAny(p, "#+") {
			d.errorf(at("uplink", "mqtt", "prefix"), "uplink.mqtt.prefix", "%q must be a non-empty topic without wildcards", p)
		}
		if c.Uplink.MQTT.ReceiptTimeout < time.Second {
			d.errorf(at("uplink", "mqtt", "receipt_timeout"), "uplink.mqtt.receipt_timeout", "%s is below the minimum of 1s", c.Uplink.MQTT.ReceiptTimeout)
		}
	}
}

// Warnings lists what is valid but probably not what the operator wants.
func (c *Config) Warnings() []string {
	var w []string
	if !c.UplinkConfigured() {
		key := "uplink.http.url"
		if c.Uplink.Kind == "mqtt" {
			key = "uplink.mqtt.broker"
		}
		w = append(w, key+" is not set: readings are kept in the spool until it is")
	}
	if len(c.Sensors) == 0 {
		w = append(w, "sensors is empty: nothing will be sampled")
	}
	return w
}

// UplinkConfigured says whether readings have somewhere to go.
func (c *Config) UplinkConfigured() bool {
	if c.Uplink.Kind == "mqtt" {
		return c.Uplink.MQTT.Broker != ""
	}
	return c.Uplink.HTTP.URL != ""
}

// find returns the node at path, or the deepest one that exists (for a
// line number to point at).
func find(n *yaml.Node, path ...string) *yaml.Node {
	for _, key := range path {
		n = resolve(n)
		if n.Kind != yaml.MappingNode {
			return n
		}
		next := (*yaml.Node)(nil)
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return n
		}
		n = next
	}
	return n
}
