package receiver

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/store"
)

// MQTTOptions configure MQTT ingest.
type MQTTOptions struct {
	// Broker is the broker's URL (tcp://, ssl://, ws://); a user and
	// password in it are the receiver's credentials.
	Broker   string
	ClientID string // one per replica; the session is persistent
	Prefix   string // topic prefix, default "outpost"
	Group    string // shared-subscription group, default "outpost-receiver"
	// Username and Password log in to the broker; they take precedence
	// over credentials in Broker's URL.
	Username, Password string
	Logger             *slog.Logger
	// The limits of one message, as on HTTP: MaxBodyBytes bounds it as
	// sent, MaxDecodedBytes after gzip decompression, MaxLineBytes and
	// MaxLines one line and its lines. Zero values take the Server's
	// (Options), so both transports refuse alike.
	MaxBodyBytes    int64
	MaxDecodedBytes int64
	MaxLineBytes    int
	MaxLines        int
	// DeviceCacheTTL bounds how long a device's registration is trusted
	// without asking the store whether any device changed (default
	// DefaultDeviceCacheTTL): a revoke stops a device's MQTT ingest on
	// every replica within it.
	DeviceCacheTTL time.Duration

	// crashAfterCommit, in tests, is asked after each commit whether to
	// stop right there, before the receipt and the acknowledgement.
	crashAfterCommit func() bool
}

// MQTT ingests batches from the broker: a shared subscription on
// <prefix>/+/readings, QoS 1, a persistent session, and each message
// acknowledged only once its batch is committed (or kept as rejected),
// then a receipt published on <prefix>/<device>/receipts.
type MQTT struct {
	client    mqtt.Client
	store     store.Store
	opt       MQTTOptions
	log       *slog.Logger
	metrics   *metrics
	conflicts *conflictLog
	ctx       context.Context
	cancel    context.CancelFunc
	subOnce   sync.Once
	subbed    chan struct{} // closed once the first subscription holds
	handled   atomic.Int64  // batches committed by this replica
	devices   *deviceCache  // which devices may send
}

// StartMQTT connects to the broker and subscribes. Messages are handled
// until Close.
func (s *Server) StartMQTT(ctx context.Context, opt MQTTOptions) (*MQTT, error) {
	if opt.Prefix == "" {
		opt.Prefix = "outpost"
	}
	if opt.Group == "" {
		opt.Group = "outpost-receiver"
	}
	if opt.MaxBodyBytes <= 0 {
		opt.MaxBodyBytes = s.opt.MaxBodyBytes
	}
	if opt.MaxDecodedBytes <= 0 {
		opt.MaxDecodedBytes = s.opt.MaxDecodedBytes
	}
	if opt.MaxLineBytes <= 0 {
		opt.MaxLineBytes = s.opt.MaxLineBytes
	}
	if opt.MaxLines <= 0 {
		opt.MaxLines = s.opt.MaxLines
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(opt.Broker)
	if err != nil {
		return nil, fmt.Errorf("mqtt broker url: %w", err)
	}
	co := mqtt.NewClientOptions()
	if u.User != nil {
		co.SetUsername(u.User.Username())
		if p, ok := u.User.Password(); ok {
			co.SetPassword(p)
		}
		u.User = nil
	}
	if opt.Username != "" {
		co.SetUsername(opt.Username)
	}
	if opt.Password != "" {
		co.SetPassword(opt.Password)
	}
	m := &MQTT{store: s.store, opt: opt, log: opt.Logger, metrics: s.metrics, conflicts: s.conflicts, subbed: make(chan struct{}),
		devices: newDeviceCache(s.store, opt.DeviceCacheTTL, nil)}
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	filter := "$share/" + opt.Group + "/" + opt.Prefix + "/+/readings"
	co.AddBroker(u.String()).SetClientID(opt.ClientID).
		SetCleanSession(false). // the broker keeps our messages while we are down
		SetAutoAckDisabled(true).
		SetOrderMatters(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetMaxReconnectInterval(30 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(m.handleReadings). // messages of the session before we resubscribe
		SetOnConnectHandler(func(c mqtt.Client) {
			// Heartbeats: retained, so every replica keeps the last one
			// (not shared: storing it twice is harmless).
			c.Subscribe(opt.Prefix+"/+/status", 1, m.handleStatus)
			t := c.Subscribe(filter, 1, m.handleReadings)
			go func() {
				if t.WaitTimeout(30*time.Second) && t.Error() == nil {
					m.log.Info("mqtt subscribed", "filter", filter)
					m.subOnce.Do(func() { close(m.subbed) })
					return
				}
				m.log.Error("mqtt subscribe failed", "filter", filter, "err", t.Error())
			}()
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { m.log.Warn("mqtt connection lost", "err", err) })
	m.client = mqtt.NewClient(co)
	t := m.client.Connect()
	if !t.WaitTimeout(30 * time.Second) {
		m.client.Disconnect(0)
		return nil, fmt.Errorf("connect to mqtt broker %s: timed out", u.Redacted())
	}
	if err := t.Error(); err != nil {
		m.client.Disconnect(0)
		return nil, fmt.Errorf("connect to mqtt broker %s: %w", u.Redacted(), err)
	}
	select {
	case <-m.subbed:
	case <-time.After(30 * time.Second):
		m.Close()
		return nil, fmt.Errorf("subscribe to %s on mqtt broker %s: timed out", filter, u.Redacted())
	}
	return m, nil
}

// Close stops handling messages and disconnects; messages not yet
// acknowledged are delivered again to this or another replica.
func (m *MQTT) Close() {
	m.cancel()
	m.client.Disconnect(1000)
}

// topicDevice returns the device of <prefix>/<device>/readings.
func (m *MQTT) topicDevice(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, m.opt.Prefix+"/")
	if !ok {
		return "", false
	}
	dev, ok := strings.CutSuffix(rest, "/readings")
	return dev, ok && reading.ValidateDevice(dev) == nil
}

// handleStatus keeps a device's heartbeat from <prefix>/<device>/status
// (the last will's {"state":"offline"} included) as its last status.
func (m *MQTT) handleStatus(_ mqtt.Client, msg mqtt.Message) {
	defer msg.Ack()
	rest, _ := strings.CutPrefix(msg.Topic(), m.opt.Prefix+"/")
	device, ok := strings.CutSuffix(rest, "/status")
	var obj map[string]json.RawMessage
	if !ok || reading.ValidateDevice(device) != nil || len(msg.Payload()) > maxStatusBytes || json.Unmarshal(msg.Payload(), &obj) != nil {
		m.log.Info("mqtt status ignored: not a JSON object on <prefix>/<device>/status", "topic", msg.Topic())
		return
	}
	var claimed struct {
		Device *string `json:"device"`
	}
	if json.Unmarshal(msg.Payload(), &claimed) == nil && claimed.Device != nil && *claimed.Device != device {
		m.metrics.rejected.WithLabelValues("mqtt", "status_device").Inc()
		m.log.Info("mqtt status ignored: it names another device than its topic", "topic", msg.Topic(), "device", *claimed.Device)
		return
	}
	if !m.allowed(msg, device) {
		return
	}
	if err := m.store.SaveStatus(m.ctx, device, msg.Payload(), time.Now().UTC()); err != nil {
		m.log.Warn("mqtt status not stored", "device", device, "err", err)
	}
}

// handleReadings stores a batch from <prefix>/<device>/readings, then
// publishes its receipt and acknowledges it; a message that can never be
// stored is kept as rejected, receipted so and acknowledged.
func (m *MQTT) handleReadings(_ mqtt.Client, msg mqtt.Message) {
	if strings.HasSuffix(msg.Topic(), "/status") { // from the session, before the subscriptions were renewed
		m.handleStatus(nil, msg)
		return
	}
	start := time.Now()
	device, ok := m.topicDevice(msg.Topic())
	if !ok {
		m.reject(msg, "", fmt.Errorf("topic %q is not %s/<device>/readings", msg.Topic(), m.opt.Prefix), 0)
		return
	}
	if !m.allowed(msg, device) {
		if m.ctx.Err() == nil {
			msg.Ack() // no receipt: the device sends again later, as over HTTP after a 401
		}
		return
	}
	if n := int64(len(msg.Payload())); n > m.opt.MaxBodyBytes {
		m.reject(msg, device, fmt.Errorf("%w: %d bytes, over the limit of %d: split the batch", errMessageTooLarge, n, m.opt.MaxBodyBytes), 0)
		return
	}
	src, err := openPayload(msg.Payload())
	if err != nil {
		m.reject(msg, device, err, 0)
		return
	}
	src = &limitReader{r: src, n: m.opt.MaxDecodedBytes}
	b, err := decodeLines(src, reading.Limits{MaxLineBytes: m.opt.MaxLineBytes, MaxLines: m.opt.MaxLines}, device, "topic")
	if err != nil {
		line := 0
		var le *reading.LineError
		var de *deviceError
		if errors.As(err, &le) {
			line = le.Line
		} else if errors.As(err, &de) {
			line = de.Line
		}
		m.reject(msg, device, err, line)
		return
	}
	b.ReceivedAt = time.Now().UTC()
	// A database outage holds the message (unacknowledged) and retries:
	// the broker would redeliver it only after a reconnect.
	var res store.Result
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 30*time.Second) {
		res, err = m.store.Ingest(m.ctx, device, b)
		if err == nil {
			break
		}
		m.metrics.storeErrs.WithLabelValues("ingest").Inc()
		m.log.Warn("mqtt batch not stored, will retry", "device", device, "err", err, "retry_s", wait.Seconds())
		select {
		case <-m.ctx.Done():
			return // not acknowledged: delivered again after reconnect
		case <-time.After(wait):
		}
	}
	m.metrics.committed("mqtt", res)
	m.conflicts.note(m.log, "mqtt", device, res)
	m.handled.Add(1)
	if m.opt.crashAfterCommit != nil && m.opt.crashAfterCommit() {
		return
	}
	m.metrics.latency.WithLabelValues("mqtt").Observe(time.Since(start).Seconds())
	for _, r := range receipts(b) {
		m.publishReceipt(device, r)
	}
	releaseBatch(b)
	msg.Ack()
}

// allowed reports whether device, of msg's topic, is registered and not
// revoked, as the HTTP API requires of a token. A message of any other
// device is counted and logged (once per device while the cache holds
// the answer), and nothing of it is stored: not even as rejected, so
// that a flood of them costs no writes. A store that fails is asked
// again (the message stays unacknowledged) until it answers or the
// receiver stops.
func (m *MQTT) allowed(msg mqtt.Message, device string) bool {
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 30*time.Second) {
		err, fresh := m.devices.check(m.ctx, device)
		switch {
		case err == nil:
			return true
		case errors.Is(err, store.ErrUnknownDevice), errors.Is(err, store.ErrRevoked):
			reason := "unknown_device"
			if errors.Is(err, store.ErrRevoked) {
				reason = "revoked"
			}
			m.metrics.rejected.WithLabelValues("mqtt", reason).Inc()
			if fresh {
				m.log.Warn("mqtt messages of this device refused: "+err.Error(), "device", device, "topic", msg.Topic())
			}
			return false
		}
		m.metrics.storeErrs.WithLabelValues("check_device").Inc()
		m.log.Warn("mqtt device not checked, will retry", "device", device, "err", err, "retry_s", wait.Seconds())
		select {
		case <-m.ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

// reject keeps a message that can never be stored, receipts it as
// rejected and acknowledges it.
func (m *MQTT) reject(msg mqtt.Message, device string, err error, line int) {
	m.metrics.rejected.WithLabelValues("mqtt", "rejected").Inc()
	m.log.Info("mqtt message rejected", "topic", msg.Topic(), "err", err)
	rj := store.Rejected{Topic: msg.Topic(), Device: device, Err: err.Error(), Line: line, ReceivedAt: time.Now().UTC()}
	rj.KeepPayload(msg.Payload()) // its first KiB, size and SHA-256, not whatever junk was sent
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 30*time.Second) {
		err := m.store.Reject(m.ctx, rj)
		if err == nil {
			break
		}
		m.log.Warn("mqtt rejected message not kept, will retry", "err", err)
		select {
		case <-m.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
	if device != "" {
		// Name the stream and the seqs the message held, as far as they
		// can be read, so the device can match the receipt to its batch
		// and dead-letter it instead of sending it again forever.
		stream, seqs := identify(msg.Payload(), m.opt.MaxDecodedBytes)
		m.publishReceipt(device, reading.Receipt{Stream: stream, Ranges: [][2]uint64{},
			Rejected: []reading.RejectedRange{{Ranges: toRanges(seqs), Error: err.Error(), Line: line}}})
	}
	msg.Ack()
}

// errMessageTooLarge: a message over MQTTOptions.MaxBodyBytes as sent.
var errMessageTooLarge = errors.New("message too large")

// openPayload returns a message's NDJSON, gunzipped when it starts with
// gzip's magic bytes (devices may compress, and MQTT has no header to say
// so).
func openPayload(payload []byte) (io.Reader, error) {
	if len(payload) >= 2 && payload[0] == 0x1f && payload[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("invalid gzip data: %w", err)
		}
		return zr, nil
	}
	return bytes.NewReader(payload), nil
}

// identify reads what it can of a message that failed to decode: the
// stream of its lines and their seqs, ignoring everything else.
func identify(payload []byte, maxBytes int64) (stream string, seqs []uint64) {
	src, err := openPayload(payload)
	if err != nil {
		return "", nil
	}
	sc := bufio.NewScanner(io.LimitReader(src, maxBytes))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Stream string `json:"stream"`
			Seq    uint64 `json:"seq"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Stream == "" {
			continue
		}
		if stream == "" {
			stream = l.Stream
		}
		if l.Stream == stream && l.Seq > 0 {
			seqs = append(seqs, l.Seq)
		}
	}
	return stream, seqs
}

func (m *MQTT) publishReceipt(device string, r reading.Receipt) {
	body, _ := json.Marshal(r)
	t := m.client.Publish(m.opt.Prefix+"/"+device+"/receipts", 1, false, body)
	if !t.WaitTimeout(30*time.Second) || t.Error() != nil {
		// The device sends the batch again after its receipt timeout; the
		// resend is a duplicate and gets a receipt then.
		m.log.Warn("mqtt receipt not published", "device", device, "err", t.Error())
	}
}

// receipts returns one receipt per stream of the batch: the seq ranges now
// stored (duplicates and conflicts included: the key is taken) and the
// dropped ranges recorded.
func receipts(b *store.Batch) []reading.Receipt {
	seqs := map[reading.StreamID][]uint64{}
	var order []reading.StreamID
	add := func(st reading.StreamID) {
		if _, ok := seqs[st]; !ok {
			order = append(order, st)
			seqs[st] = nil
		}
	}
	for _, r := range b.Readings {
		add(r.Stream)
		seqs[r.Stream] = append(seqs[r.Stream], r.Seq)
	}
	dropped := map[reading.StreamID][][2]uint64{}
	for _, d := range b.Dropped {
		add(d.Stream)
		dropped[d.Stream] = append(dropped[d.Stream], [2]uint64{d.From, d.To})
	}
	var out []reading.Receipt
	for _, st := range order {
		out = append(out, reading.Receipt{Stream: st.String(), Ranges: toRanges(seqs[st]), Dropped: dropped[st]})
	}
	return out
}

// toRanges turns seqs into sorted, merged [from, to] ranges.
func toRanges(seqs []uint64) [][2]uint64 {
	seqs = slices.Clone(seqs)
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	out := [][2]uint64{}
	for _, s := range seqs {
		if n := len(out); n > 0 && out[n-1][1]+1 == s {
			out[n-1][1] = s
			continue
		}
		out = append(out, [2]uint64{s, s})
	}
	return out
}
