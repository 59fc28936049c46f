// Package config loads the edge daemon's configuration file
// (/etc/outpost/outpost.yaml): strict YAML, every key checked, every
// problem of the file reported at once with its line and key path. The
// sensors list is decoded by the sampler, which knows each driver's keys;
// WriteYAML prints the effective configuration back for `outpost config
// check`.
package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
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

// Sensor is one entry of the sensors list: its YAML node, aliases
// expanded (printed back by config check, compared on reload), and what
// the sampler decoded from it, each driver checking its own keys with
// their lines.
type Sensor struct {
	Name string
	Node *yaml.Node
	Spec sampler.SensorSpec
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

// Parse is Load on the bytes of a file; name is used in errors. The error
// is a strictyaml.Problems.
func Parse(name string, data []byte) (*Config, error) {
	root, err := strictyaml.Parse(name, data)
	if err != nil {
		return nil, err
	}
	cfg := Defaults()
	d := strictyaml.NewDecoder(name)
	if root != nil {
		cfg.decode(d, root)
		cfg.check(d, root)
	}
	if err := d.Err(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// decode reads the top level: each key the file gives replaces its
// default.
func (c *Config) decode(d *strictyaml.Decoder, root *yaml.Node) {
	top := d.Map("", root)
	c.Device = top.Str("device", c.Device)
	c.Spool.decode(top.Map("spool"))
	c.Uplink.decode(top.Map("uplink"))
	c.Sensors = decodeSensors(d, top)
	c.Status.Socket = top.Map("status").Str("socket", c.Status.Socket)
	c.Log.Level = top.Map("log").OneOf("level", c.Log.Level, "debug", "info", "warn", "error")
}

func (s *Spool) decode(m *strictyaml.Map) {
	s.Path = m.Str("path", s.Path)
	s.CommitInterval = m.Duration("commit_interval", s.CommitInterval)
	s.MaxBytes = size(m, "max_bytes", s.MaxBytes)
	s.MaxAge = m.Duration("max_age", s.MaxAge)
	s.Policy = m.OneOf("policy", s.Policy, "drop_oldest", "reject_new")
}

func (u *Uplink) decode(m *strictyaml.Map) {
	u.Kind = m.OneOf("kind", u.Kind, "http", "mqtt")
	u.HTTP.decode(m.Map("http"))
	u.MQTT.decode(m.Map("mqtt"))
	b := m.Map("batch")
	u.Batch.MaxReadings = b.Int("max_readings", u.Batch.MaxReadings, 1, 100_000)
	u.Batch.MaxBytes = size(b, "max_bytes", u.Batch.MaxBytes)
	u.Batch.InFlight = b.Int("in_flight", u.Batch.InFlight, 1, 64)
	u.RateLimit = m.Float("rate_limit", u.RateLimit)
	if u.RateLimit < 0 {
		m.Errorf("rate_limit", "%v must not be negative", u.RateLimit)
	}
	u.Heartbeat = m.Duration("heartbeat", u.Heartbeat)
}

func (h *HTTP) decode(m *strictyaml.Map) {
	h.URL = url(m, "url", h.URL, "http", "https")
	h.TokenFile = file(m, "token_file", h.TokenFile, true)
	h.CAFile = file(m, "ca_file", h.CAFile, false)
	h.ClientCert = file(m, "client_cert", h.ClientCert, false)
	h.ClientKey = file(m, "client_key", h.ClientKey, true)
}

func (q *MQTT) decode(m *strictyaml.Map) {
	q.Broker = url(m, "broker", q.Broker, "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss")
	q.Username = m.Str("username", q.Username)
	q.PasswordFile = file(m, "password_file", q.PasswordFile, true)
	q.Prefix = m.Str("prefix", q.Prefix)
	q.Confirm = m.OneOf("confirm", q.Confirm, "receiver", "broker")
	q.ReceiptTimeout = m.Duration("receipt_timeout", q.ReceiptTimeout)
	q.CAFile = file(m, "ca_file", q.CAFile, false)
}

// decodeSensors hands the sensors list to the sampler, which knows every
// driver's keys, with the same decoder: its problems join the others.
func decodeSensors(d *strictyaml.Decoder, top *strictyaml.Map) []Sensor {
	n := top.Get("sensors")
	var sensors []Sensor
	for i, spec := range sampler.DecodeSensors(d, top.Key("sensors"), n) {
		entry := strictyaml.Resolve(n).Content[i] // one spec an entry
		sensors = append(sensors, Sensor{Name: spec.Name, Node: withoutAliases(entry), Spec: spec})
	}
	return sensors
}

// withoutAliases copies n with each alias replaced by what it names, so
// that the entry stands alone: it may name an anchor set outside the
// sensors list (device: &d …), which WriteYAML's list would not define
// and a comparison on reload would not see.
func withoutAliases(n *yaml.Node) *yaml.Node {
	n = strictyaml.Resolve(n)
	c := *n
	c.Anchor = ""
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, child := range n.Content {
		c.Content[i] = withoutAliases(child)
	}
	return &c
}

// check validates what holds across keys, after decoding.
func (c *Config) check(d *strictyaml.Decoder, root *yaml.Node) {
	at := func(path ...string) *yaml.Node { return find(root, path...) }
	if err := reading.ValidateDevice(c.Device); err != nil {
		d.Errorf(at("device"), "device", "%q: %v", c.Device, err)
	}
	if c.Spool.Path == "" {
		d.Errorf(at("spool", "path"), "spool.path", "must not be empty")
	}
	if c.Spool.MaxBytes < reading.MiB {
		d.Errorf(at("spool", "max_bytes"), "spool.max_bytes", "%s is below the minimum of 1MiB", c.Spool.MaxBytes)
	}
	if c.Uplink.Batch.MaxBytes < 4*reading.KiB {
		d.Errorf(at("uplink", "batch", "max_bytes"), "uplink.batch.max_bytes", "%s is below the minimum of 4KiB", c.Uplink.Batch.MaxBytes)
	}
	if c.Uplink.Heartbeat < time.Second {
		d.Errorf(at("uplink", "heartbeat"), "uplink.heartbeat", "%s is below the minimum of 1s", c.Uplink.Heartbeat)
	}
	switch c.Uplink.Kind {
	case "http":
		if (c.Uplink.HTTP.ClientCert == "") != (c.Uplink.HTTP.ClientKey == "") {
			d.Errorf(at("uplink", "http"), "uplink.http", "client_cert and client_key go together")
		}
	case "mqtt":
		if p := c.Uplink.MQTT.Prefix; p == "" || strings.ContainsAny(p, "#+") {
			d.Errorf(at("uplink", "mqtt", "prefix"), "uplink.mqtt.prefix", "%q must be a non-empty topic without wildcards", p)
		}
		if c.Uplink.MQTT.ReceiptTimeout < time.Second {
			d.Errorf(at("uplink", "mqtt", "receipt_timeout"), "uplink.mqtt.receipt_timeout", "%s is below the minimum of 1s", c.Uplink.MQTT.ReceiptTimeout)
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
	if s := c.cleartextWarning(); s != "" {
		w = append(w, s)
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
		n = strictyaml.Resolve(n)
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
