package uplink

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/outpost-iot/outpost/internal/reading"
)

// MQTTOptions configure the MQTT sender.
type MQTTOptions struct {
	Broker       string // tcp://host:1883, tls://host:8883, …
	Device       string // the client id and the topic level
	Username     string
	PasswordFile string // read at every connect, so a rotated one is used
	CAFile       string
	Prefix       string // topic prefix (default "outpost")
	// ConfirmBroker deletes a batch on the broker's PUBACK. By default a
	// batch counts only when an Outpost receiver's receipt says it is
	// committed to its database: a broker's PUBACK is not durable.
	ConfirmBroker  bool
	ReceiptTimeout time.Duration // default 60s
	Gzip           bool
	Backoff        Backoff // between connection attempts
	Logger         *slog.Logger
}

// MQTT publishes batches to <prefix>/<device>/readings at QoS 1 and, unless
// ConfirmBroker, waits for the receiver's receipt on
// <prefix>/<device>/receipts. It connects and reconnects by itself.
type MQTT struct {
	o              MQTTOptions
	client         mqtt.Client
	readingsTopic  string
	receiptsTopic  string
	statusTopic    string
	publishTimeout time.Duration
	log            *slog.Logger

	mu        sync.Mutex
	waiters   map[*waiter]struct{}
	connErr   error // why the last attempt failed or the link dropped
	refused   bool  // the broker refused us: credentials or ACL
	lastState []byte
	lost      chan struct{}
	gone      chan struct{} // closed when the current connection is lost
	up        chan struct{} // signalled when connected (again)
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// NewMQTT returns a sender that starts connecting in the background.
func NewMQTT(o MQTTOptions) (*MQTT, error) {
	if err := reading.ValidateDevice(o.Device); err != nil {
		return nil, fmt.Errorf("uplink mqtt: device %q: %w", o.Device, err)
	}
	if o.Prefix == "" {
		o.Prefix = "outpost"
	}
	if o.ReceiptTimeout <= 0 {
		o.ReceiptTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m := &MQTT{
		o:              o,
		readingsTopic:  o.Prefix + "/" + o.Device + "/readings",
		receiptsTopic:  o.Prefix + "/" + o.Device + "/receipts",
		statusTopic:    o.Prefix + "/" + o.Device + "/status",
		publishTimeout: 30 * time.Second,
		log:            o.Logger,
		waiters:        map[*waiter]struct{}{},
		connErr:        errors.New("not connected yet"),
		lost:           make(chan struct{}, 1),
		gone:           closedChan(),
		up:             make(chan struct{}, 1),
		stop:           make(chan struct{}),
		done:           make(chan struct{}),
	}
	opts := mqtt.NewClientOptions().
		AddBroker(o.Broker).
		SetClientID(o.Device).
		SetCleanSession(true).
		SetAutoReconnect(false). // our loop reconnects, with jitter, and sees every error
		SetConnectRetry(false).
		SetConnectTimeout(15*time.Second).
		SetKeepAlive(30*time.Second).
		SetOrderMatters(false).
		SetWill(m.statusTopic, `{"state":"offline"}`, 1, true).
		SetOnConnectHandler(m.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			m.setConnErr(fmt.Errorf("connection to %s lost: %w", o.Broker, err), false)
			m.mu.Lock()
			select {
			case <-m.gone:
			default:
				close(m.gone)
			}
			m.mu.Unlock()
			select {
			case m.lost <- struct{}{}:
			default:
			}
		})
	if o.Username != "" || o.PasswordFile != "" {
		if o.PasswordFile != "" {
			if _, err := readSecret(o.PasswordFile); err != nil {
				return nil, fmt.Errorf("uplink mqtt: password_file: %w", err)
			}
		}
		opts.SetCredentialsProvider(func() (string, string) {
			pw, err := readSecret(o.PasswordFile)
			if err != nil {
				m.log.Error("reading the MQTT password file", "err", err)
			}
			return o.Username, pw
		})
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("uplink mqtt: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("uplink mqtt: ca_file %s: no PEM certificate in it", o.CAFile)
		}
		opts.SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	m.client = mqtt.NewClient(opts)
	go m.connectLoop()
	return m, nil
}

func readSecret(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// connectLoop keeps the client connected until Close.
func (m *MQTT) connectLoop() {
	defer close(m.done)
	failures := 0
	for {
		tok := m.client.Connect()
		select {
		case <-tok.Done():
		case <-m.stop:
			return
		}
		if err := tok.Error(); err != nil {
			failures++
			refused := isRefusal(err)
			m.setConnErr(fmt.Errorf("connecting to %s: %w", m.o.Broker, err), refused)
			// A broker that is not there is tried again within a second
			// (a returning link is used at once); one that refused us
			// backs off in full.
			delay := m.o.Backoff.Delay(failures, 0)
			if !refused {
				delay = min(delay, m.o.Backoff.UnreachableDelay())
			}
			select {
			case <-time.After(delay):
			case <-m.stop:
				return
			}
			continue
		}
		if failures > 0 {
			m.log.Info("connected to the MQTT broker again", "broker", m.o.Broker, "after_failures", failures)
		}
		failures = 0
		select {
		case <-m.lost:
		case <-m.stop:
			return
		}
	}
}

func isRefusal(err error) bool {
	return errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) ||
		errors.Is(err, packets.ErrorRefusedIDRejected)
}

func (m *MQTT) setConnErr(err error, refused bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.connErr == nil || m.connErr.Error() != err.Error() {
		level := slog.LevelWarn
		if refused {
			level = slog.LevelError
		}
		m.log.Log(context.Background(), level, "MQTT broker unavailable", "err", err)
	}
	m.connErr, m.refused = err, refused
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// Up is signalled each time the client has connected (again) and
// subscribed to the receipts: the drain then probes at once.
func (m *MQTT) Up() <-chan struct{} { return m.up }

// onConnect subscribes to the receipts, publishes the retained status and
// signals Up.
func (m *MQTT) onConnect(c mqtt.Client) {
	m.mu.Lock()
	m.connErr, m.refused = nil, false
	m.gone = make(chan struct{})
	state := m.lastState
	m.mu.Unlock()
	defer func() {
		select {
		case m.up <- struct{}{}:
		default:
		}
	}()
	if tok := c.Subscribe(m.receiptsTopic, 1, m.onReceipt); tok.WaitTimeout(m.publishTimeout) && tok.Error() != nil {
		m.log.Error("subscribing to receipts", "topic", m.receiptsTopic, "err", tok.Error())
	}
	if state == nil {
		state = []byte(`{"state":"online"}`)
	}
	c.Publish(m.statusTopic, 1, true, state)
}

// SendStatus publishes the device heartbeat, retained, and keeps it to
// publish again on every connect. It should carry "state":"online".
func (m *MQTT) SendStatus(ctx context.Context, heartbeat []byte) error {
	m.mu.Lock()
	m.lastState = slices.Clone(heartbeat)
	m.mu.Unlock()
	if !m.client.IsConnectionOpen() {
		return m.notConnected()
	}
	return m.wait(ctx, m.client.Publish(m.statusTopic, 1, true, heartbeat), "publishing status")
}

func (m *MQTT) notConnected() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.connErr == nil {
		return errors.New("not connected: the connection was lost")
	}
	return fmt.Errorf("not connected: %w", m.connErr)
}

func (m *MQTT) wait(ctx context.Context, tok mqtt.Token, what string) error {
	m.mu.Lock()
	gone := m.gone
	m.mu.Unlock()
	return m.waitOn(ctx, gone, tok, what)
}

// waitOn waits for tok, unless the connection it was sent on is gone.
func (m *MQTT) waitOn(ctx context.Context, gone <-chan struct{}, tok mqtt.Token, what string) error {
	timer := time.NewTimer(m.publishTimeout)
	defer timer.Stop()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	case <-gone:
		return fmt.Errorf("%s: %w", what, m.notConnected())
	case <-timer.C:
		return fmt.Errorf("%s: no PUBACK within %v", what, m.publishTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close disconnects; the broker then keeps the retained status as it was.
func (m *MQTT) Close() {
	m.closeOnce.Do(m.close)
}

func (m *MQTT) close() {
	close(m.stop)
	<-m.done
	if m.client.IsConnected() {
		m.client.Publish(m.statusTopic, 1, true, `{"state":"offline"}`).WaitTimeout(2 * time.Second)
	}
	m.client.Disconnect(250)
}

// Send publishes one batch and, unless ConfirmBroker, waits for the
// receiver's receipt of every seq in it.
func (m *MQTT) Send(ctx context.Context, b *reading.Batch) Result {
	if !m.client.IsConnectionOpen() {
		m.mu.Lock()
		refused := m.refused
		m.mu.Unlock()
		return Result{Outcome: Retry, Misconfigured: refused, Unreachable: !refused, Err: m.notConnected()}
	}
	m.mu.Lock()
	gone := m.gone
	m.mu.Unlock()
	var buf bytes.Buffer
	if res, ok := encodeBatch(&buf, b, m.o.Gzip); !ok {
		return res
	}
	var w *waiter
	if !m.o.ConfirmBroker {
		w = newWaiter(b)
		m.mu.Lock()
		m.waiters[w] = struct{}{}
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			delete(m.waiters, w)
			m.mu.Unlock()
		}()
	}
	if err := m.waitOn(ctx, gone, m.client.Publish(m.readingsTopic, 1, false, buf.Bytes()), "publishing batch"); err != nil {
		return Result{Outcome: Retry, Err: err, Unreachable: isClosed(gone)}
	}
	if w == nil {
		return Result{Outcome: Accepted, Counts: Counts{Accepted: len(b.Readings)}}
	}
	timer := time.NewTimer(m.o.ReceiptTimeout)
	defer timer.Stop()
	select {
	case <-w.done:
		return w.result(b)
	case <-gone:
		// The receipt, if one was sent, went to the lost connection's
		// subscription: send it again once connected.
		return Result{Outcome: Retry, Unreachable: true, Err: fmt.Errorf("waiting for the receipt: %w", m.notConnected())}
	case <-timer.C:
		return Result{Outcome: Retry, Err: fmt.Errorf("no receipt on %s within %v (is an outpost-receiver subscribed? with another consumer, set confirm: broker)", m.receiptsTopic, m.o.ReceiptTimeout)}
	case <-ctx.Done():
		return Result{Outcome: Retry, Err: ctx.Err()}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (m *MQTT) onReceipt(_ mqtt.Client, msg mqtt.Message) {
	var r reading.Receipt
	if err := json.Unmarshal(msg.Payload(), &r); err != nil {
		m.log.Warn("ignoring a receipt that is not JSON", "topic", msg.Topic(), "err", err)
		return
	}
	stream, err := reading.ParseStreamID(r.Stream)
	if err != nil {
		m.log.Warn("ignoring a receipt with a bad stream", "stream", r.Stream, "err", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for w := range m.waiters {
		if w.stream == stream {
			w.apply(&r)
		}
	}
}

// waiter tracks which seqs of one batch still lack a receipt.
type waiter struct {
	stream       reading.StreamID
	outstanding  map[uint64]bool
	rejectedSeq  uint64 // first rejected seq, 0 if none
	rejectedLine int    // the line the receiver named, 0 if none
	rejectedErr  string
	done         chan struct{}
	closed       bool
}

func newWaiter(b *reading.Batch) *waiter {
	w := &waiter{stream: b.Stream, outstanding: map[uint64]bool{}, done: make(chan struct{})}
	for _, r := range b.Readings {
		w.outstanding[r.Seq] = true
	}
	if len(b.Readings) == 0 {
		// A batch that only reports ranges is receipted by those ranges.
		for _, d := range b.Dropped {
			w.outstanding[d.From] = true
		}
	}
	return w
}

func (w *waiter) apply(r *reading.Receipt) {
	cover := func(ranges [][2]uint64) (first uint64) {
		for _, rg := range ranges {
			for seq := range w.outstanding {
				if seq >= rg[0] && seq <= rg[1] {
					delete(w.outstanding, seq)
					if first == 0 || seq < first {
						first = seq
					}
				}
			}
		}
		return first
	}
	cover(r.Ranges)
	cover(r.Dropped)
	rejected := false
	for _, rej := range r.Rejected {
		if seq := cover(rej.Ranges); seq != 0 && (w.rejectedSeq == 0 || seq < w.rejectedSeq) {
			w.rejectedSeq, w.rejectedLine, w.rejectedErr = seq, rej.Line, rej.Error
			rejected = true
		}
	}
	// A receiver takes or refuses a message whole: a rejection that names
	// any seq of ours settles the batch.
	if (len(w.outstanding) == 0 || rejected) && !w.closed {
		w.closed = true
		close(w.done)
	}
}

func (w *waiter) result(b *reading.Batch) Result {
	if w.rejectedSeq == 0 {
		return Result{Outcome: Accepted, Counts: Counts{Accepted: len(b.Readings)}}
	}
	line := w.rejectedLine
	if line < 1 || line > len(b.Readings) {
		line = 0
		for i, r := range b.Readings {
			if r.Seq == w.rejectedSeq {
				line = i + 1
			}
		}
	}
	return Result{Outcome: Rejected, Line: line, Err: fmt.Errorf("rejected by the receiver: %s", w.rejectedErr)}
}
