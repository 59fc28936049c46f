package config

import (
	"net"
	neturl "net/url"
	"strings"
)

// cleartextWarning names a secret the uplink would send unencrypted to
// another machine: a bearer token over http://, an MQTT password over
// tcp:// (mqtt://) or ws://. Anyone on the path can read it and then send
// as this device. Loopback is fine (a local proxy or broker). "" if none.
func (c *Config) cleartextWarning() string {
	if !c.UplinkConfigured() {
		return ""
	}
	if c.Uplink.Kind == "mqtt" {
		m := c.Uplink.MQTT
		if m.PasswordFile == "" {
			return ""
		}
		u, err := neturl.Parse(m.Broker)
		if err != nil || !cleartextScheme(u.Scheme, "tcp", "mqtt", "ws") || loopback(u.Hostname()) {
			return ""
		}
		return "uplink.mqtt.password_file is sent in clear to " + u.Host + " (" + u.Scheme + "://): anyone on the path can read it; use ssl:// (mqtts://) or wss://"
	}
	h := c.Uplink.HTTP
	if h.TokenFile == "" {
		return ""
	}
	u, err := neturl.Parse(h.URL)
	if err != nil || !cleartextScheme(u.Scheme, "http") || loopback(u.Hostname()) {
		return ""
	}
	return "uplink.http.token_file is sent in clear to " + u.Host + " (http://): anyone on the path can read the token and send as this device; use https://"
}

func cleartextScheme(scheme string, clear ...string) bool {
	for _, s := range clear {
		if strings.EqualFold(scheme, s) {
			return true
		}
	}
	return false
}

// loopback reports whether host is this machine: localhost or a loopback
// address (not resolved: a name could resolve anywhere).
func loopback(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
